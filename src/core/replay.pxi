# The Tape's inner loops (core/tape.pxi runs them): forward's loop for a neuron's sum,
# backward's carry along a sum, the skip of zero-grad runs (_skip_regions finds them
# when recording), and their prefetching.
# C only: the twin (micrograd/_pure/tape.py) runs the same arithmetic one instruction at a
# time, inline in its forward and backward, zeros included; the results are the same floats.


cdef void* _alloc(Py_ssize_t n, size_t size) except NULL:
    """calloc for a Tape's arrays: zeroed, never NULL (MemoryError instead)."""
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef inline Py_ssize_t _run_backward(Instr* code, Py_ssize_t k, Py_ssize_t base,
                                     double* val, double* grd, bint far) noexcept:
    """Pass the grad of instruction k's output on to its operands' grads, and go on down
    while each FMA's acc is the output of the instruction right below it and not also one
    of its factors (a neuron's running sum): every consumer of that acc has then run, so
    its finished grad is carried in a register, not through a store and a reload (a
    store-to-load round trip on the chain's critical path, as in forward). Returns the
    next instruction to run. (C only: the twin runs the same arithmetic one instruction
    at a time.)"""
    cdef double g = grd[base + k]
    cdef double dx, dy, acc
    cdef Instr c
    cdef Instr* f
    while True:
        if far:
            f = code + (k - PREFETCH if k >= PREFETCH else 0)
            _prefetch(f, grd)
            _prefetch(f, val)
        c = code[k]
        if c.op != FMA:
            _partials(c.op, val[c.x], val[c.y], val[base + k], &dx, &dy)
            grd[c.x] += dx * g
            grd[c.y] += dy * g              # unary ops: lands in a constant's slot
            return k - 1
        acc = grd[c.x] + g                  # the ADD passes g to acc and to the MUL
        grd[c.x] = acc
        grd[c.y] += val[c.z] * g
        grd[c.z] += val[c.y] * g
        k -= 1
        if k < 0 or c.x != base + k or c.y == c.x or c.z == c.x:
            return k
        g = acc


cdef inline double _run_chain(Instr* code, double* val, Py_ssize_t base, Py_ssize_t k,
                              Py_ssize_t m, double out, Py_ssize_t n_far) noexcept:
    """Forward of the m FMAs from instruction k on, each adding to the output of the one
    before (out: the output of k - 1); returns the last one's output. Reads only y and z:
    half the work per FMA of the general loop, so the CPU overlaps more neurons' sums
    (each a serial chain of adds). n_far: 0, or the length of a tape bigger than the
    caches, for which it prefetches as forward does.
    (C only: the twin runs each FMA through its general loop.)"""
    cdef Py_ssize_t j
    cdef Instr* e = code + k
    cdef double* o = val + base + k
    for j in range(m):
        if n_far:
            _prefetch(code + (k + j + PREFETCH if k + j + PREFETCH < n_far else n_far - 1), val)
        out = out + val[e[j].y] * val[e[j].z]
        o[j] = out
    return out


cdef inline bint _zero_safe(int op) noexcept:
    """Does op, given a finite output and a grad of 0, add only zeros (+0.0 or -0.0) to its
    operands' grads? Its partials must then be finite (inf * 0 is nan): ADD's and RELU's
    are 0 or 1, TANH's and SIGMOID's are bounded, EXP's is its output, and MUL's and
    FMA's are factors of a finite output (an inf factor makes the output inf or nan).
    POWC's, POW's and LOG's can be inf where the output is finite (LOG's 1/x at 5e-324)."""
    return not (op == POWC or op == POW or op == LOG)


cdef inline uint64_t _nonfinite_bits(double x) noexcept:
    """The top bit is set if x is inf or nan: adding 1 to the exponent bits carries into
    it only when they are all set. ORed over many values, one test answers for all; an
    OR of integers, which gcc vectorises (a float sum would be a serial chain)."""
    cdef uint64_t bits
    memcpy(&bits, &x, sizeof(double))
    return (bits & 0x7ff0000000000000ULL) + 0x0010000000000000ULL


cdef inline bint _all_finite(const double* v, Py_ssize_t n) noexcept:
    """Is every v[i] finite?"""
    cdef Py_ssize_t i
    cdef uint64_t acc = 0
    for i in range(n):
        acc |= _nonfinite_bits(v[i])
    return (acc >> 63) == 0


cdef inline bint _run_finite(const double* out, Py_ssize_t j, Py_ssize_t k,
                             _Finite* known) noexcept:
    """Are the outputs j..k all finite? Backward asks with k going down and the outputs
    fixed, so what one answer found serves the next: the stretch known finite grows down,
    and a known inf or nan fails every run that holds it at once. Without that, a long run
    of ADDs above an inf would be rescanned at every instruction (quadratic)."""
    cdef Py_ssize_t i
    if k < known.lo or k > known.hi:    # outside what is known: start afresh at k
        if known.bad_below and k == known.lo - 1:
            return False
        known.hi = k
        known.lo = k + 1
        known.bad_below = False
    if j >= known.lo:
        return True
    if known.bad_below:
        return False
    if _all_finite(out + j, known.lo - j):
        known.lo = j
        return True
    i = known.lo - 1                    # the highest inf or nan: the lowest known-finite
    while isfinite(out[i]):             # output is above it
        i -= 1
    known.lo = i + 1
    known.bad_below = True
    return False


cdef inline void _use(int* last_use, Py_ssize_t i, Py_ssize_t n, Py_ssize_t k) noexcept:
    if 0 <= i < n:                      # an instruction's output, not a leaf or constant
        last_use[i] = k


cdef void _skip_regions(Instr* code, Py_ssize_t n, Py_ssize_t base, int* last_use,
                        int* chain, int* lo) noexcept:
    """Recording, for the Tape's loops (chain and lo: n ints each, zeroed). chain[k]: how
    many instructions right after k are FMAs each adding to the output of the one before.
    lo[k]: the lowest instruction of the run of zero-safe ones below a zero-safe k whose
    outputs feed only instructions in the run or k itself. When k's grad is 0 and the run's
    outputs are finite, so is the grad of every node in it, and everything it passes down
    is a zero, which adds nothing to a grad: backward skips the run (a dead relu's neuron
    sum, a met margin's whole sample: in the demo, most of a step's instructions after its
    first step). Runs nest, so each is found by jumping over the runs below it. last_use:
    n ints, left holding the highest instruction reading each one's output (n: none).
    (C only: the twin computes the zeros.)"""
    cdef Py_ssize_t k, s
    cdef Instr c
    for k in range(n):
        last_use[k] = n                     # read by none (the root): never in a run
    for k in range(n):
        c = code[k]
        _use(last_use, c.x - base, n, k)
        _use(last_use, c.y - base, n, k)
        if c.op == FMA:
            _use(last_use, c.z - base, n, k)
    for k in range(n - 2, -1, -1):
        c = code[k + 1]
        if c.op == FMA and c.x == base + k:
            chain[k] = chain[k + 1] + 1
    for k in range(n):
        s = k
        if _zero_safe(code[k].op):
            while s > 0 and last_use[s - 1] <= k and _zero_safe(code[s - 1].op):
                s = lo[s - 1]
        lo[k] = s


cdef inline bint _is_minus_zero(double x) noexcept:
    return x == 0.0 and signbit(x)


cdef inline void _prefetch(Instr* f, double* a) noexcept:
    """Start loading the operands of the instruction at f from array a. A replay on a
    tape bigger than the caches prefetches PREFETCH instructions ahead: a DAG's far
    operands then miss in parallel, not one by one behind each mispredicted op branch.
    (C only: the twin has no counterpart.)"""
    __builtin_prefetch(a + f.x)
    __builtin_prefetch(a + f.y)
    __builtin_prefetch(a + f.z)

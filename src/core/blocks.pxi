# Blocks: a dense layer's neurons, found in a Tape's program and replayed together.
# C only: the twin (micrograd/_pure/tape.py) runs the same arithmetic one instruction at a
# time; every value and grad is the same float.
#
# A block is m >= 2 neurons recorded one after the other: each a sum of L FMAs over the
# same inputs (z) with weights of its own (y), followed by one unary op on the sum (its
# activation) and, in every neuron or none, by a tail (the instruction of the next layer
# that reads the activation, which the walk records in between):
#     sum_0, act_0[, tail_0], sum_1, act_1[, tail_1], ...
# (a layer's neurons but the first, which the walk records interleaved with the layer
# below). One at a time, each sum is a serial chain of adds that decodes an instruction
# per FMA; a block runs BLOCK_WAYS sums at once (BLOCK_WAYS_DENSE over dense weights, and
# over packed ones two SIMD groups: core/packs.pxi), each FMA a load, a multiply and an
# add, so the CPU has that many chains in flight. Sums of at most BLOCK_NARROW FMAs run
# one neuron at a time: chains that short overlap on their own.
#
# Forward runs the sums, then each activation and tail in order (a relu chain's after each
# group); backward the tails, the activations, then the sums, each top down. Two common
# shapes get loops that decode less (_block_flags): relus whose tails form the next layer's first sum, and weights in
# consecutive slots. Neither stores a partial sum or its grad: each has one reader, the next
# FMA, and _fill_partials computes them when something else reads them. That is safe because nothing else runs
# between the block's instructions, the sums read only slots written before the block,
# a tail only those, its activation and earlier tails, and each partial sum has one
# reader, the next FMA. Backward adds to each slot in the order the instruction loop
# would: the inputs' grads sum the neurons top down, as the loop does, and the inputs,
# the weights, the sums' starts (biases) and the tails' other operands are distinct
# slots (_block_distinct), so no two of those sequences interleave.


cdef bint _tail_reads(Instr c, Py_ssize_t a, Py_ssize_t j, Py_ssize_t stride,
                      Py_ssize_t L, Py_ssize_t base, Py_ssize_t n) noexcept:
    """Is c, the instruction after neuron j's activation, its tail: does it read the
    activation, and may it still run after the whole block? Its other operands: slots
    written before the block, constants, or an earlier neuron's tail."""
    cdef int o, i
    cdef bint reads = False
    cdef int ops[3]
    ops[0] = c.x
    ops[1] = c.y
    ops[2] = c.z if c.op == FMA else c.y
    for i in range(3):
        o = ops[i] - base - a           # as an instruction of the block
        if o == j * stride + L:
            reads = True
        elif o >= 0 and ops[i] < base + n and (o % stride != L + 1 or o // stride >= j):
            return False
    return reads


cdef Py_ssize_t _block_sums(Instr* code, int* chain, int* last_use, Py_ssize_t a,
                            Py_ssize_t n, Py_ssize_t base, Py_ssize_t zero,
                            Py_ssize_t* stride) noexcept:
    """How many neurons of one block follow each other from instruction a (an FMA).
    stride: L + 1, or L + 2 if each activation is followed by a tail: an instruction of
    the next layer that reads it (the walk records a neuron of the layer above as it
    reaches each of its inputs), run after the block. last_use: the highest instruction
    reading each one's output; a partial sum must be read only by the next FMA, or its
    grad would be more than its sum's."""
    cdef Py_ssize_t L = chain[a] + 1, s = a, i, m = 0, w
    cdef Py_ssize_t before = base + a       # slots written before the block
    cdef Instr c
    if L < 2 or L > BLOCK_MAX:
        return 0
    w = L + 1
    if a + L + 1 < n and _tail_reads(code[a + L + 1], a, 0, L + 2, L, base, n):
        w = L + 2
    stride[0] = w
    while s + w <= n and code[s].op == FMA and chain[s] == L - 1 and code[s].x < before:
        c = code[s + L]                     # the activation: a unary op on this sum
        if c.op == FMA or c.x != base + s + L - 1 or c.y != zero:
            break
        if w == L + 2 and not _tail_reads(code[s + L + 1], a, m, w, L, base, n):
            break
        for i in range(L):
            c = code[s + i]
            if (c.y >= before or c.z >= before or c.z != code[a + i].z
                    or (i < L - 1 and last_use[s + i] != s + i + 1)):
                return m
        m += 1
        s += w
    return m


cdef bint _block_distinct(Instr* code, Py_ssize_t a, Py_ssize_t m, Py_ssize_t L,
                          Py_ssize_t w, Py_ssize_t before, unsigned char* mark) noexcept:
    """Are the inputs distinct slots, and inputs, weights, sums' starts and the tails'
    operands from before the block four disjoint sets? mark: zeros, one per slot below
    before; left zeros."""
    cdef Py_ssize_t i, j, s
    cdef bint ok = True
    cdef Instr t
    for i in range(L):
        ok &= mark[code[a + i].z] == 0
        mark[code[a + i].z] = 1
    for j in range(m):
        s = a + j * w
        for i in range(L):
            ok &= mark[code[s + i].y] != 1
            mark[code[s + i].y] |= 2
    for j in range(m):
        ok &= mark[code[a + j * w].x] == 0
    for j in range(m):
        mark[code[a + j * w].x] = 4
    if w == L + 2:
        for j in range(m):
            t = code[a + j * w + L + 1]
            ok &= (t.x >= before or mark[t.x] == 0) and (t.y >= before or mark[t.y] == 0)
            if t.op == FMA:
                ok &= t.z >= before or mark[t.z] == 0
    for j in range(m):
        s = a + j * w
        mark[code[s].x] = 0
        for i in range(L):
            mark[code[s + i].y] = 0
            mark[code[s + i].z] = 0
    return ok


cdef int _block_flags(Instr* code, Py_ssize_t a, Py_ssize_t m, Py_ssize_t L, Py_ssize_t w,
                      Py_ssize_t base) noexcept:
    """BLOCK_DENSE if each neuron's weights are consecutive slots, in the order of its FMAs
    (nn.py creates a neuron's weights one after the other): forward then reads them
    without their indices, and backward's loop over a sum's FMAs reads and writes whole
    stretches of val and grd, which gcc vectorises.
    BLOCK_RELU_CHAIN if every activation is a relu and every tail an FMA with it as its
    second factor, adding to the tail before (the first: to a slot written before the
    block, which forward reads before the first relu): a layer's relus and the next
    layer's first sum, which forward runs with nothing to decode."""
    cdef Py_ssize_t i, j, t
    cdef int flags = BLOCK_DENSE | (BLOCK_RELU_CHAIN if w == L + 2 else 0)
    cdef Instr c
    for j in range(m):
        for i in range(L):
            if code[a + j * w + i].y != code[a + j * w].y + i:
                flags &= ~BLOCK_DENSE
        t = a + j * w + L
        c = code[t + 1]
        if (w == L + 2 and (code[t].op != RELU or c.op != FMA or c.z != base + t
                            or (c.x != base + t - w + 1 if j > 0 else c.x >= base + a))):
            flags &= ~BLOCK_RELU_CHAIN
    return flags


cdef void _find_blocks(Instr* code, int* chain, int* last_use, int* blk, Py_ssize_t n,
                       Py_ssize_t base, Py_ssize_t zero, unsigned char* mark) noexcept:
    """blk[a] = m at the first instruction of a block of m neurons, blk[a + 1] its BLOCK_
    flags (_block_flags); blk[t] = -(a + 1) at each of its activations and
    tails t, where backward may enter it. Visits the
    instructions as forward does (a sum at a time), so forward meets every block at its
    start."""
    cdef Py_ssize_t k = 0, m, j, L, w
    while k < n:
        if code[k].op != FMA:
            k += 1
            continue
        L = chain[k] + 1
        m = _block_sums(code, chain, last_use, k, n, base, zero, &w)
        if m >= 2 and _block_distinct(code, k, m, L, w, base + k, mark):
            blk[k] = m
            blk[k + 1] = _block_flags(code, k, m, L, w, base)
            for j in range(m):
                blk[k + j * w + L] = -(k + 1)
                if w == L + 2:
                    blk[k + j * w + L + 1] = -(k + 1)
            k += m * w
        else:
            k += L


cdef Py_ssize_t _wide_blocks(int* chain, int* blk, Py_ssize_t n, int* wide) noexcept:
    """How many blocks have sums of more than BLOCK_NARROW FMAs; their starts, top down,
    into wide (if given)."""
    cdef Py_ssize_t k = 0, count = 0
    while k < n:
        if blk[k] <= 0:
            k += 1
            continue
        if chain[k] + 1 > BLOCK_NARROW:
            count += 1
            if wide != NULL:
                wide[-count] = k            # filled from the end: wide points past it
        k += blk[k] * _block_stride(blk, chain, k)
    return count


cdef inline void _zero_slots(double* g, Py_ssize_t n) noexcept:
    if n > 4:
        memset(g, 0, n * sizeof(double))
    else:                                   # a neuron's sum, activation and tail: stores
        while n > 0:                        # cost less than a call
            n -= 1
            g[n] = 0.0


cdef void _zero_grads(double* grd, int* dirty, Py_ssize_t n_dirty, int* wide,
                      Py_ssize_t n_wide, int* chain, int* blk) noexcept:
    """Zero the grads of the dirty ranges (instructions first..last, top down; grd: the
    first instruction's slot) but those of the wide blocks' partial sums (top down too):
    Tape.backward neither writes nor reads those (_fill_partials computes them when read),
    and in the demo they are two thirds of what a backward writes."""
    cdef Py_ssize_t r, w = 0, a, hi, s, m, L, stride, ps
    for r in range(n_dirty):
        a = dirty[2 * r]
        hi = dirty[2 * r + 1]               # slots a..hi are left to zero
        while w < n_wide:
            s = wide[w]
            L = chain[s] + 1
            stride = _block_stride(blk, chain, s)
            m = blk[s]
            if s + m * stride - 1 < a:      # the block is below this range
                break
            if s > hi:                      # above it
                w += 1
                continue
            m = min(m, (hi - s) // stride + 1)  # its neurons from the one holding hi down
            if m > 0:                       # the top one: its written slots and all above
                m -= 1
                ps = s + m * stride         # this neuron's partial sums: ps..ps + L - 2
                if ps + L - 2 >= a:
                    _zero_slots(grd + ps + L - 1, hi - (ps + L - 2))
                    hi = ps - 1
            while m > 0 and s + m * stride - 1 >= a:
                m -= 1                      # whole neurons: sum, activation[, tail]
                ps = s + m * stride + L - 1
                grd[ps] = 0.0
                grd[ps + 1] = 0.0
                if stride == L + 2:
                    grd[ps + 2] = 0.0
                hi = ps - L
            if s < a:                       # the block goes on below: the next range's
                break
            w += 1
        if hi >= a:
            _zero_slots(grd + a, hi - a + 1)


cdef inline Py_ssize_t _block_stride(int* blk, int* chain, Py_ssize_t a) noexcept:
    """A block's instructions per neuron: L + 2 if its neurons have tails, else L + 1
    (after neuron 0's activation comes its tail, or neuron 1's first FMA)."""
    cdef Py_ssize_t L = chain[a] + 1
    return L + 2 if blk[a + L + 1] < 0 else L + 1


cdef inline uint64_t _dense_sums8(Instr* e, double* o, double* x, Py_ssize_t stride,
                                  Py_ssize_t L, const double* val) noexcept:
    """_sums_forward of BLOCK_WAYS_DENSE sums over dense weights."""
    cdef Py_ssize_t i
    cdef const double* w[8]
    cdef double s0, s1, s2, s3, s4, s5, s6, s7
    for i in range(8):
        w[i] = val + e[i * stride].y
    s0, s1, s2, s3 = val[e.x], val[e[stride].x], val[e[2 * stride].x], val[e[3 * stride].x]
    s4, s5 = val[e[4 * stride].x], val[e[5 * stride].x]
    s6, s7 = val[e[6 * stride].x], val[e[7 * stride].x]
    for i in range(L):
        s0 = s0 + w[0][i] * x[i]
        s1 = s1 + w[1][i] * x[i]
        s2 = s2 + w[2][i] * x[i]
        s3 = s3 + w[3][i] * x[i]
        s4 = s4 + w[4][i] * x[i]
        s5 = s5 + w[5][i] * x[i]
        s6 = s6 + w[6][i] * x[i]
        s7 = s7 + w[7][i] * x[i]
    o[L - 1], o[stride + L - 1], o[2 * stride + L - 1], o[3 * stride + L - 1] = s0, s1, s2, s3
    o[4 * stride + L - 1], o[5 * stride + L - 1] = s4, s5
    o[6 * stride + L - 1], o[7 * stride + L - 1] = s6, s7
    return (_nonfinite_bits(s0) | _nonfinite_bits(s1) | _nonfinite_bits(s2)
            | _nonfinite_bits(s3) | _nonfinite_bits(s4) | _nonfinite_bits(s5)
            | _nonfinite_bits(s6) | _nonfinite_bits(s7))


cdef inline uint64_t _sums_forward(Instr* e, double* o, double* x, Py_ssize_t stride,
                                   Py_ssize_t L, const double* val, Py_ssize_t w,
                                   bint dense) noexcept:
    """Forward of w (2, BLOCK_WAYS or BLOCK_WAYS_DENSE) sums side by side, the first at
    instruction e, writing each sum's output to o (the first sum's outputs), but not its
    partial sums (_fill_partials computes them when read); x: the inputs' values.
    dense: each sum's weights are consecutive slots, read without their indices.
    Returns the OR of the sums' outputs' _nonfinite_bits."""
    cdef Py_ssize_t i
    cdef const double* w0
    cdef const double* w1
    cdef const double* w2
    cdef const double* w3
    cdef Instr* e1 = e + stride
    cdef Instr* e2 = e1 + stride
    cdef Instr* e3 = e2 + stride
    cdef double* o1 = o + stride
    cdef double* o2 = o1 + stride
    cdef double* o3 = o2 + stride
    cdef double s0, s1, s2, s3
    if w == BLOCK_WAYS_DENSE:
        return _dense_sums8(e, o, x, stride, L, val)
    s0, s1 = val[e.x], val[e1.x]
    if w == 4 and dense:                    # the same floats, four loads fewer per step
        s2 = val[e2.x]
        s3 = val[e3.x]
        w0, w1, w2, w3 = val + e.y, val + e1.y, val + e2.y, val + e3.y
        for i in range(L):
            s0 = s0 + w0[i] * x[i]
            s1 = s1 + w1[i] * x[i]
            s2 = s2 + w2[i] * x[i]
            s3 = s3 + w3[i] * x[i]
        o[L - 1] = s0
        o1[L - 1] = s1
        o2[L - 1] = s2
        o3[L - 1] = s3
        return (_nonfinite_bits(s0) | _nonfinite_bits(s1) | _nonfinite_bits(s2)
                | _nonfinite_bits(s3))
    if w == 4:
        s2 = val[e2.x]
        s3 = val[e3.x]
        for i in range(L):
            s0 = s0 + val[e[i].y] * x[i]
            s1 = s1 + val[e1[i].y] * x[i]
            s2 = s2 + val[e2[i].y] * x[i]
            s3 = s3 + val[e3[i].y] * x[i]
        o[L - 1] = s0
        o1[L - 1] = s1
        o2[L - 1] = s2
        o3[L - 1] = s3
        return (_nonfinite_bits(s0) | _nonfinite_bits(s1) | _nonfinite_bits(s2)
                | _nonfinite_bits(s3))
    for i in range(L):
        s0 = s0 + val[e[i].y] * x[i]
        s1 = s1 + val[e1[i].y] * x[i]
    o[L - 1] = s0
    o1[L - 1] = s1
    return _nonfinite_bits(s0) | _nonfinite_bits(s1)


cdef inline uint64_t _narrow_forward(Instr* meta, double* val, Py_ssize_t base, Py_ssize_t a,
                                     Py_ssize_t m, Py_ssize_t stride, Py_ssize_t L,
                                     const double* x, bint chain_, double* tails) noexcept:
    """_block_forward's sums of at most BLOCK_NARROW FMAs, each with its relu and tail if
    chain_ (tails: the tails' running output); returns the sums' _nonfinite_bits. meta:
    the instructions to read weights, biases and tails' weights from (_set_code)."""
    cdef Py_ssize_t i, j, t
    cdef uint64_t fin = 0
    cdef double s, act, out = tails[0]
    cdef Instr* e
    for j in range(m):
        e = meta + j * stride
        s = val[e.x]
        for i in range(L):
            s = s + val[e[i].y] * x[i]
        t = a + j * stride + L
        val[base + t - 1] = s
        fin |= _nonfinite_bits(s)
        if chain_:
            act = _relu(s)
            val[base + t] = act
            out = out + val[e[L + 1].y] * act
            val[base + t + 1] = out
    tails[0] = out
    return fin


cdef Py_ssize_t _block_forward(Instr* code, int* chain, int* blk, double* val,
                               Py_ssize_t base, Py_ssize_t a, uint64_t* bad,
                               const double* packed, int* packs) except -1:
    """Forward of the block of m neurons at instruction a; returns its length in
    instructions. Sums of up to BLOCK_NARROW FMAs one at a time, longer ones in groups of
    BLOCK_WAYS (BLOCK_WAYS_DENSE over dense weights); a last group that does not fill up
    starts earlier and recomputes sums already done (the same floats again): no one-sum
    tail, which would be one serial chain. Sets bad to the OR of the _nonfinite_bits of each
    sum's output and of each tail that the next one does not add to: an inf or nan carries
    up a sum, so a sum's output answers for its partial sums, the last tail of a chain for
    the chain, and the sum for its activation, which is finite where its input is (exp and
    log raise rather than overflow; relu, tanh and sigmoid cannot)."""
    cdef double x[BLOCK_MAX]
    cdef uint64_t fin = 0
    cdef Py_ssize_t i, j, t, tail, m = blk[a], L = chain[a] + 1
    cdef Py_ssize_t stride = _block_stride(blk, chain, a)
    cdef double act, out, s
    cdef Py_ssize_t w = BLOCK_WAYS if m >= BLOCK_WAYS else 2
    cdef Py_ssize_t done = 0                # relu chain: neurons whose relu and tail ran
    cdef bint chain_ = blk[a + 1] & BLOCK_RELU_CHAIN
    cdef Instr c
    cdef Instr* e
    cdef const double* pw = NULL            # the block's packed weights, if it has them
    cdef Instr* meta = _set_code(code, blk, packs, a)   # weights, biases, tails' weights
    if blk[a + 1] & BLOCK_DENSE and m >= BLOCK_WAYS_DENSE:
        w = BLOCK_WAYS_DENSE
        pw = _packed_of(blk, packs, packed, a)
    for i in range(L):
        x[i] = val[code[a + i].z]
    out = val[code[a + L + 1].x] if chain_ else 0.0
    if L <= BLOCK_NARROW:                   # short sums: one neuron at a time, in one loop
        if L == 2:                          # with its relu and tail, each sum too short a
            fin = _narrow_forward(meta, val, base, a, m, stride, 2, x, chain_, &out)
        else:                               # chain to need others beside it (L == 2: a
            fin = _narrow_forward(meta, val, base, a, m, stride, L, x, chain_, &out)
        j = m                               # copy gcc unrolls, for a layer over 2 inputs)
    else:
        j = 0
    while j < m:
        if j + w > m:
            j = m - w
        if pw != NULL:                      # and the next group with it, if there is one
            t = 0 if j + w == m else (w if j + 2 * w <= m else m - w - j)
            fin |= _packed_forward(meta + j * stride, val + base + a + j * stride, x,
                                   stride, L, val, pw, t)
            pw += (2 if t else 1) * L * BLOCK_WAYS_DENSE
            j += t
        else:
            fin |= _sums_forward(meta + j * stride, val + base + a + j * stride, x,
                                 stride, L, val, w, blk[a + 1] & BLOCK_DENSE)
        j += w
        if chain_:                          # this group's relus and tails, with nothing to
            for i in range(done, j):        # decode: the tails' serial chain of adds runs
                t = a + i * stride + L          # beside the next group's sums
                act = _relu(val[base + t - 1])
                val[base + t] = act
                out = out + val[meta[i * stride + L + 1].y] * act
                val[base + t + 1] = out
            done = j
    if chain_:
        bad[0] = fin | _nonfinite_bits(out)
        return m * stride
    tail = -1                               # the last tail's slot and output: the next
    out = 0.0                               # tail's acc, when it adds to it (a register,
    for j in range(m):                      # not a store and a reload on the tails' chain)
        t = a + j * stride + L
        c = code[t]                         # the activation, then its tail
        act = _relu(val[c.x]) if c.op == RELU else _forward(c.op, val[c.x], val[c.y])
        val[base + t] = act
        if stride == L + 2:
            c = code[t + 1]
            if c.x != tail or not (c.op == FMA or c.op == ADD):
                fin |= _nonfinite_bits(out)     # the last tail's output, unless this one
            if c.op == FMA:                     # adds to it: an inf or nan carries up
                out = (out if c.x == tail else val[c.x]) + val[c.y] * val[c.z]
            else:
                out = _forward(c.op, out if c.x == tail else val[c.x], val[c.y])
            tail = base + t + 1
            val[tail] = out
    bad[0] = fin | _nonfinite_bits(out)
    return m * stride


cdef inline void _dense_backward(double* gw, const double* w, const double* x, double* gz,
                                 double gp, Py_ssize_t n) noexcept:
    """A sum's FMAs below its top, where its weights are the n slots from w (their grads
    from gw): each weight's grad and each input's (gz). Every slot gets one add, so their
    order is free: gcc vectorises the loop."""
    cdef Py_ssize_t i
    for i in range(n):
        gw[i] += x[i] * gp
        gz[i] += w[i] * gp


cdef void _fill_partials(Instr* code, int* chain, int* blk, double* val, double* grd,
                         Py_ssize_t base, Py_ssize_t n) noexcept:
    """The partial sums of every block's neurons, which forward and backward do not store:
    into val (if given), their values, the same floats again from the inputs and weights;
    into grd (if given), their grads, each its sum's grad plus 0.0 (a partial sum's one
    reader is the next FMA, which passes it its own grad: 0.0 + g)."""
    cdef Py_ssize_t k = 0, j, i, s, L, stride
    cdef double acc
    while k < n:
        if blk[k] <= 0:
            k += 1
            continue
        L = chain[k] + 1
        stride = _block_stride(blk, chain, k)
        for j in range(blk[k]):
            s = k + j * stride
            if val != NULL:
                acc = val[code[s].x]
                for i in range(L - 1):
                    acc = acc + val[code[s + i].y] * val[code[s + i].z]
                    val[base + s + i] = acc
            if grd != NULL:
                acc = grd[base + s + L - 1] + 0.0
                for i in range(L - 1):
                    grd[base + s + i] = acc
        k += blk[k] * stride


cdef bint _holds_partial(int* chain, int* blk, Py_ssize_t n, Py_ssize_t base, int* held,
                         Py_ssize_t n_held, int* fused_in, unsigned char* mark) noexcept:
    """Is a held slot a block's partial sum, or the MUL fused into one (whose grad is the
    sum's), written back after every replay? mark: n zeros, left zeros."""
    cdef Py_ssize_t k = 0, j, i, L, stride, s
    cdef bint found = False
    for i in range(n_held):
        s = held[i] - base
        if s >= n:                      # a fused MUL: its FMA
            s = fused_in[s - n]
        mark[s] = 1
    while k < n:
        if blk[k] <= 0:
            k += 1
            continue
        L = chain[k] + 1
        stride = _block_stride(blk, chain, k)
        for j in range(blk[k]):
            for i in range(L - 1):
                found |= mark[k + j * stride + i]
        k += blk[k] * stride
    for i in range(n_held):
        s = held[i] - base
        mark[s if s < n else fused_in[s - n]] = 0
    return found


cdef inline void _sums_backward(Instr* code, Instr* meta, double* val, double* grd,
                                Py_ssize_t base, Py_ssize_t a, Py_ssize_t top, Py_ssize_t stride,
                                Py_ssize_t L, bint dense, bint chain_, bint skip) noexcept:
    """_block_backward's sums, neurons top down from top (a relu chain's relus with them);
    meta: the instructions to read weights and biases from (_set_code)."""
    cdef double x[BLOCK_MAX]
    cdef double gz[BLOCK_MAX]               # the inputs' grads, summed top down
    cdef double g, gp
    cdef Py_ssize_t i, j, s
    cdef Instr* e
    for i in range(L):
        x[i] = val[code[a + i].z]
        gz[i] = grd[code[a + i].z]
    for j in range(top, -1, -1):
        s = a + j * stride
        e = meta + j * stride
        g = grd[base + s + L - 1]           # the sum's grad
        if chain_:                          # its relu's, with no op to dispatch on and
            g = g + (val[base + s + L] > 0.0) * grd[base + s + L]   # nothing added to the
            grd[base + s + L - 1] = g                               # constant 0.0's slot
        if skip and g == 0.0 and isfinite(val[base + s + L - 1]):
            continue
        # Each FMA passes its grad to acc (0 + g), and so on down: every partial sum's
        # grad is gp (_fill_partials stores it when read), but the top FMA passes g itself
        # to its factors.
        gp = g + 0.0
        grd[e[L - 1].y] += x[L - 1] * g
        gz[L - 1] += val[e[L - 1].y] * g
        if dense:
            _dense_backward(grd + e.y, val + e.y, x, gz, gp, L - 1)
        else:
            for i in range(L - 2, -1, -1):
                grd[e[i].y] += x[i] * gp
                gz[i] += val[e[i].y] * gp
        grd[e.x] += gp                      # the sum's start (a bias)
    for i in range(L):
        grd[code[a + i].z] = gz[i]


cdef Py_ssize_t _block_backward(Instr* code, int* chain, int* blk, double* val, double* grd,
                                Py_ssize_t base, Py_ssize_t a, Py_ssize_t k,
                                bint skip, int* packs) noexcept:
    """Backward of the block at instruction a from its activation or tail at k down (k is
    below the last one when backward skipped what was above); returns a - 1. Tails first,
    then activations, then sums, each top down (a relu chain's relus each with its sum). A
    sum whose grad is 0 and whose output is finite (then so is each partial sum and factor:
    an inf or nan carries up a sum) is skipped, as Tape.backward skips a zero-grad run
    (skip: no leaf's grad is -0.0)."""
    cdef double dx, dy, g, gp
    cdef Py_ssize_t j, t, L = chain[a] + 1
    cdef Py_ssize_t stride = _block_stride(blk, chain, a), top = (k - a) // stride
    cdef Py_ssize_t y, p
    cdef bint dense = blk[a + 1] & BLOCK_DENSE
    cdef bint chain_ = blk[a + 1] & BLOCK_RELU_CHAIN
    cdef Instr* meta = _set_code(code, blk, packs, a)   # weights, biases, tails' weights
    cdef Instr c
    if chain_:                              # each tail's acc is the tail below: its grad is
        j = top if (k - a) % stride == L + 1 else top - 1   # carried in a register, as in
        g = grd[base + a + j * stride + L + 1]              # _run_backward, unless the tail
        while j > 0:                                        # also reads it as a factor;
            t = base + a + j * stride + L                   # its acc and second factor are
            y = meta[j * stride + L + 1].y                  # known slots: the tail below's
            p = t + 1 - stride                              # and its activation's (t)
            gp = grd[p] + g
            grd[p] = gp
            grd[y] += val[t] * g
            grd[t] += val[y] * g
            g = gp if y != p else grd[p]
            j -= 1
        if j == 0:                          # the first: its acc comes from before the block
            c = code[a + L + 1]
            grd[c.x] += g
            grd[c.y] += val[c.z] * g
            grd[c.z] += val[c.y] * g
    elif stride == L + 2:
        for j in range(top if (k - a) % stride == L + 1 else top - 1, -1, -1):
            t = a + j * stride + L + 1
            c = code[t]
            g = grd[base + t]
            if c.op == FMA:                 # as in _run_backward
                grd[c.x] += g
                grd[c.y] += val[c.z] * g
                grd[c.z] += val[c.y] * g
            else:
                _partials(c.op, val[c.x], val[c.y], val[base + t], &dx, &dy)
                grd[c.x] += dx * g
                grd[c.y] += dy * g
    if not chain_:                          # (relus: in the sums' loop below)
        for j in range(top, -1, -1):        # activations: each passes its grad to its sum
            t = a + j * stride + L
            c = code[t]
            _partials(c.op, val[c.x], val[c.y], val[base + t], &dx, &dy)
            grd[c.x] += dx * grd[base + t]
            grd[c.y] += dy * grd[base + t]  # lands in the constant 0.0's slot
    if L == 2:                              # a copy gcc unrolls (a layer over 2 inputs)
        _sums_backward(code, meta, val, grd, base, a, top, stride, 2, dense, chain_, skip)
    else:
        _sums_backward(code, meta, val, grd, base, a, top, stride, L, dense, chain_, skip)
    return a - 1

# Tape: record a graph once, then replay forward and backward over dense C arrays.
# Twin: micrograd/_pure/tape.py.
#
# Recording (_plan, _place, _compile) numbers every node with a slot: leaves first,
# then op nodes in topological order (the MULs fused into an FMA last), then constants
# (0.0 for unary ops' y, POWC exponents). Instruction k writes slot n_leaves + k from
# slots code[k].x and code[k].y (and .z). Replay touches only the arrays, not the Values
# of the op nodes; values are copied back into the Values a user still holds (the root,
# a list of scores...). The other op nodes can only be reached through _prev,
# pickling, Tape.nodes or an eager backward(): those first sync every stale tape into
# its nodes, and after _prev/pickling/Tape.nodes every replay writes all of its nodes
# back (the user may now hold any of them).


cdef Py_ssize_t _n_stale = 0     # live tapes whose nodes lag behind their arrays
cdef bint _observed = False      # internals of a live tape were reached: write all back
# The live tapes: a doubly linked list through Tape._live_prev/_live_next, borrowed
# pointers (a tape links itself when recorded and unlinks itself when freed). Walking
# it runs no Python code, so no other thread can change it meanwhile (a WeakSet's
# iteration could fail with "Set changed size during iteration").
cdef PyObject* _live_head = NULL


cdef void _link_live(Tape t) noexcept:
    global _live_head
    t._live_prev = NULL
    t._live_next = _live_head
    if _live_head != NULL:
        (<Tape>_live_head)._live_prev = <PyObject*>t
    _live_head = <PyObject*>t


cdef void _unlink_live(Tape t) noexcept:
    global _live_head
    if t._live_prev != NULL:
        (<Tape>t._live_prev)._live_next = t._live_next
    elif _live_head == <PyObject*>t:
        _live_head = t._live_next
    else:
        return                          # never linked (its recording failed)
    if t._live_next != NULL:
        (<Tape>t._live_next)._live_prev = t._live_prev
    t._live_prev = t._live_next = NULL


cdef int _ready(Tape t) except -1:
    """Raise unless t was recorded (Tape.__new__(Tape) skips __init__)."""
    if t._nodes == NULL:
        raise RuntimeError("Tape is not initialised: create it as Tape(root)")
    return 0


cdef void _sync_tapes(Tape keep=None) except *:
    """Copy every stale tape's arrays (but keep's) into its nodes, before Python or
    another tape reads them. Replays sync the others first, so at most one tape is
    stale and a node shared by two tapes ends up with the latest replay's values."""
    cdef PyObject* p = _live_head
    if _n_stale:
        while p != NULL:
            if p != <PyObject*>keep:
                (<Tape>p)._sync()       # C only: the list cannot change meanwhile
            p = (<Tape>p)._live_next


cdef void _observe() except *:
    """A tape's inner nodes become reachable from Python: keep them all up to date."""
    global _observed
    _sync_tapes()
    _observed = True


cdef bint _custom_rule(object v) except -1:
    """Has v a _backward of its own: assigned, or defined by its subclass?"""
    return (<Value>v)._flags & USER_RULE or type(v)._backward is not Value._backward


@cython.final
cdef class Tape:
    """The graph below a root, recorded in topological order for replay.

    forward() recomputes every node from the leaves' current data and returns the
    root's; backward() gives the gradients root.backward() would give on a freshly
    built graph. Python control flow is frozen at record time; data-dependent ops
    (relu's branch, ...) are re-evaluated on every replay.
    """

    def __init__(self, Value root not None):
        cdef Py_ssize_t n
        cdef int* refs = NULL
        cdef unsigned char* mark = NULL
        if self.code != NULL:           # allocated first: set by any earlier attempt
            raise RuntimeError("Tape is already initialised")
        _sync_tapes()                   # the nodes' data seed the arrays
        _begin_walk()                   # the marks, _order and the nodes' _slot are in use
        try:
            n = _record(root, &_order, WALK_LEAVES)
            _unmark(_order.items, n)
            if n >= 2**31 - 2 - n:
                raise OverflowError("graph too large for a Tape (slots are C ints)")
            refs = <int*>_alloc(n, sizeof(int))
            mark = <unsigned char*>_alloc(n, sizeof(unsigned char))
            self._plan(root, n, refs, mark)
            self._place(n, refs, mark)
            self._compile(n)
            _skip_regions(self.code, self.n_code, self.n_leaves, refs, self.chain, self.lo)
                                        # refs (n >= n_code ints): each output's last use
            memset(mark, 0, n)          # mark (n slots) is free again: scratch
            _find_blocks(self.code, self.chain, refs, self.blk, self.n_code, self.n_leaves,
                         self.n_leaves + self.n_ops, mark)
            self.n_packs = _plan_packs(self.code, self.chain, self.blk, self.n_code,
                                       self.n_leaves, &self.packs, &self.packed)
            self.n_wide = _wide_blocks(self.chain, self.blk, self.n_code, NULL)
            self.wide = <int*>_alloc(self.n_wide, sizeof(int))
            _wide_blocks(self.chain, self.blk, self.n_code, self.wide + self.n_wide)
            self.held_partial = _holds_partial(self.chain, self.blk, self.n_code, self.n_leaves,
                                               self.held, self.n_held, self.fused_in, mark)
            self.root_slot = root._slot
        finally:
            _end_walk()
            free(refs)
            free(mark)
        memcpy(self.spare, self.val, self.n_slots * sizeof(double))    # constants in both
        self.finite = _all_finite(self.val + self.n_leaves, self.n_code)
        self._root = root
        _link_live(self)

    cdef int _plan(self, Value root, Py_ssize_t n, int* refs, unsigned char* mark) except -1:
        """Count each node's consumers (refs) and decide its place (mark); allocate."""
        cdef Py_ssize_t i, n_leaves = 0, n_shared = 0, n_fused = 0, n_powc = 0
        cdef PyObject* p
        cdef PyObject* prev = NULL      # the op node before p in walk order
        # Number the nodes in walk order and count each one's consumers in the graph.
        for i in range(n):
            (<Value>_order.items[i])._slot = i
        for i in range(n):
            p = _order.items[i]
            if (<Value>p)._a is not None:
                refs[(<Value>p)._a._slot] += 1
                if _b(<Value>p) != NULL:
                    refs[(<Value>_b(<Value>p))._slot] += 1
        # MARK_HELD: the user holds op node i (it has more references than its consumers
        # account for; the root always counts). MARK_FUSED: a MUL whose only consumer is
        # the ADD right after it in walk order; the two become one FMA instruction.
        for i in range(n):
            p = _order.items[i]
            if _python_rule(p) and _custom_rule(<object>p):
                raise TypeError("a Tape cannot replay the op %r: its _backward is Python "
                                "code, whose forward rule the Tape does not know; use "
                                "backward() on this graph" % (<object>p)._op)
            if (<Value>p)._a is None:   # LEAF, or CUSTOM (its data is taken as given)
                n_leaves += 1
                n_shared += refs[i] != 1
                continue
            if Py_REFCNT(p) > refs[i] or p == <PyObject*>root:
                mark[i] = MARK_HELD
            if (<Value>p)._code == POWC:
                n_powc += 1
            elif ((<Value>p)._code == ADD and prev != NULL and (<Value>prev)._code == MUL
                    and refs[(<Value>prev)._slot] == 1
                    and (<PyObject*>(<Value>p)._a == prev or _b(<Value>p) == prev)):
                mark[(<Value>prev)._slot] |= MARK_FUSED
                n_fused += 1
            prev = p
        self.n_leaves = n_leaves
        self.n_shared = n_shared
        self.n_ops = n - n_leaves
        self.n_code = self.n_ops - n_fused
        self.n_slots = n + 1 + n_powc
        # everything but _nodes, which comes last: __dealloc__ takes a tape with _nodes as
        # fully built, and frees the rest of a tape whose recording ran out of memory
        self.code = <Instr*>_alloc(self.n_code, sizeof(Instr))
        self.fused_in = <int*>_alloc(n_fused, sizeof(int))
        self.val = <double*>_alloc(self.n_slots, sizeof(double))
        self.spare = <double*>_alloc(self.n_slots, sizeof(double))
        self.grd = <double*>_alloc(self.n_slots, sizeof(double))
        self.by_use = <int*>_alloc(n_leaves, sizeof(int))
        self.held = <int*>_alloc(self.n_ops, sizeof(int))
        self.is_held = <unsigned char*>_alloc(n, sizeof(unsigned char))
        self.checked = <int*>_alloc(self.n_code, sizeof(int))
        self.lo = <int*>_alloc(self.n_code, sizeof(int))
        self.chain = <int*>_alloc(self.n_code, sizeof(int))
        self.blk = <int*>_alloc(self.n_code, sizeof(int))
        # a skipped run holds more than SKIP_MIN instructions, and ranges lie between skips
        self.dirty = <int*>_alloc(2 * (self.n_code // (SKIP_MIN + 1) + 2), sizeof(int))
        self.dirty[1] = self.n_code - 1     # the grads _place copied from the Values
        self.n_dirty = 1
        self._nodes = <PyObject**>_alloc(n, sizeof(PyObject*))
        return 0

    cdef void _place(self, Py_ssize_t n, int* refs, unsigned char* mark) noexcept:
        """Slots: leaves, instruction nodes, fused MULs, each group in walk order."""
        cdef Py_ssize_t i, s, leaf = 0, code = 0, fused = 0, shared = 0, once = 0
        cdef PyObject* p
        for i in range(n):
            p = _order.items[i]
            if (<Value>p)._a is None:
                s = leaf
                leaf += 1
                if refs[i] == 1:            # by_use: leaves used once after the others
                    self.by_use[self.n_shared + once] = s
                    once += 1
                else:
                    self.by_use[shared] = s
                    shared += 1
            elif mark[i] & MARK_FUSED:
                s = self.n_leaves + self.n_code + fused
                fused += 1
            else:
                s = self.n_leaves + code
                code += 1
            if mark[i] & MARK_HELD:
                self.held[self.n_held] = s
                self.n_held += 1
                self.is_held[s] = 1
            (<Value>p)._slot = s
            Py_INCREF(<object>p)
            self._nodes[s] = p
            self.val[s] = (<Value>p).data
            self.grd[s] = (<Value>p).grad

    cdef void _compile(self, Py_ssize_t n) noexcept:
        """One instruction per op node but the fused MULs; constants go after the nodes:
        slot n is 0.0, then POWC exponents."""
        cdef Py_ssize_t k, s = n + 1, j = 0
        cdef Py_ssize_t fused_start = self.n_leaves + self.n_code
        cdef Value v, b, m, acc
        for k in range(self.n_code):
            v = <Value>self._nodes[self.n_leaves + k]
            v._flags |= TAPED
            self.code[k].op = v._code
            self.code[k].x = v._a._slot
            b = _b_or_none(v)
            if b is not None:
                self.code[k].y = b._slot
            elif v._code == POWC:
                self.val[s] = v._second.c
                self.code[k].y = s
                s += 1
            else:
                self.code[k].y = n
            if v._code == ADD:          # ADD(acc, MUL) or ADD(MUL, acc), the MUL fused?
                m = acc = None
                if b._slot >= fused_start:
                    m, acc = b, v._a
                elif v._a._slot >= fused_start:
                    m, acc = v._a, b
                if m is not None:
                    m._flags |= TAPED
                    self.code[k].op = FMA
                    self.code[k].x = acc._slot
                    self.code[k].y = m._a._slot
                    self.code[k].z = _b_or_none(m)._slot
                    self.fused_in[j] = k
                    j += 1
            if _can_raise(v._code):
                self.checked[self.n_checked] = k
                self.n_checked += 1

    def __dealloc__(self):
        cdef Py_ssize_t s
        if self._nodes != NULL:
            self._sync()
            self._untag()
            # Highest slot first: the fused MULs (their ADDs still hold them), then op
            # nodes root first, then leaves. Every node's operands are still held here when
            # it is freed, so freeing never cascades down the graph.
            for s in range(self.n_leaves + self.n_ops - 1, -1, -1):
                Py_DECREF(<object>self._nodes[s])
            free(self._nodes)
        free(self.code)
        free(self.fused_in)
        free(self.val)
        free(self.spare)
        free(self.grd)
        free(self.by_use)
        free(self.held)
        free(self.is_held)
        free(self.checked)
        free(self.lo)
        free(self.chain)
        free(self.blk)
        free(self.dirty)
        free(self.wide)
        free(self.packs)
        free(self.packed)

    cdef void _untag(self) noexcept:
        """Clear TAPED on this tape's op nodes, keeping it where another tape has them."""
        global _observed
        cdef Py_ssize_t s
        cdef PyObject* p
        _unlink_live(self)
        for s in range(self.n_leaves, self.n_leaves + self.n_ops):
            p = self._nodes[s]
            _clear_flags(<Value>p, TAPED)
        p = _live_head
        while p != NULL:
            (<Tape>p)._tag()
            p = (<Tape>p)._live_next
        if _live_head == NULL:
            _observed = False

    cdef void _tag(self) noexcept:
        cdef Py_ssize_t s
        cdef PyObject* p
        for s in range(self.n_leaves, self.n_leaves + self.n_ops):
            p = self._nodes[s]
            _set_flags(<Value>p, TAPED)

    cdef void _sync(self) noexcept:
        """Write the op slots' data and grads back into the Values not held by the user."""
        global _n_stale
        cdef Py_ssize_t s
        if not (self.stale_data or self.stale_grad):
            return
        self._current_partials(FIELD_DATA)
        self._current_partials(FIELD_GRAD)
        self._fill_fused()
        for s in range(self.n_leaves, self.n_leaves + self.n_ops):
            if self.is_held[s]:
                continue
            if self.stale_data:
                (<Value>self._nodes[s]).data = self.val[s]
            if self.stale_grad:
                (<Value>self._nodes[s]).grad = self.grd[s]
        self.stale_data = self.stale_grad = False
        _n_stale -= 1

    cdef inline void _fill(self, Py_ssize_t j) noexcept:
        """Fused MUL j's data and grad, which replay skips, for writing back."""
        cdef Py_ssize_t k = self.fused_in[j]
        cdef Py_ssize_t f = self.n_leaves + self.n_code
        self.val[f + j] = self.val[self.code[k].y] * self.val[self.code[k].z]
        self.grd[f + j] = self.grd[self.n_leaves + k]  # the ADD's grad, passed on

    cdef void _current_partials(self, int field) noexcept:
        """Store the blocks' partial sums' data (or grads), which replays leave to be
        computed when read."""
        if field == FIELD_DATA and self.stale_partials:
            _fill_partials(self.code, self.chain, self.blk, self.val, NULL, self.n_leaves,
                           self.n_code)
            self.stale_partials = False
        elif field == FIELD_GRAD and self.stale_partial_grads:
            _fill_partials(self.code, self.chain, self.blk, NULL, self.grd, self.n_leaves,
                           self.n_code)
            self.stale_partial_grads = False

    cdef void _fill_fused(self) noexcept:
        cdef Py_ssize_t j
        for j in range(self.n_ops - self.n_code):
            self._fill(j)

    cdef void _write_back(self, int field) noexcept:
        """After a replay, copy the op slots' data (or grads) into the Values: all of them
        once the tape's insides were observed, else only the held ones (the rest lag
        behind until _sync)."""
        cdef Py_ssize_t k, s, fused_start = self.n_leaves + self.n_code
        cdef PyObject* p
        cdef double* src = self.val if field == FIELD_DATA else self.grd
        if _observed or self.held_partial:
            self._current_partials(field)
        if _observed:
            self._fill_fused()
            for s in range(self.n_leaves, self.n_leaves + self.n_ops):
                p = self._nodes[s]
                _set_field(<Value>p, field, src[s])
        else:
            for k in range(self.n_held):
                s = self.held[k]
                if s >= fused_start:        # a held MUL fused into its ADD
                    self._fill(s - fused_start)
                p = self._nodes[s]
                _set_field(<Value>p, field, src[s])
            self._mark_stale(field)

    cdef void _mark_stale(self, int field) noexcept:
        global _n_stale
        if not (self.stale_data or self.stale_grad):
            _n_stale += 1
        if field == FIELD_DATA:
            self.stale_data = True
        else:
            self.stale_grad = True

    def forward(self):
        """Recompute every node from the leaves' current data; return the root's data."""
        cdef Py_ssize_t s, k, m, base = self.n_leaves, n = self.n_code
        cdef bint far = self.n_slots > PREFETCH_FROM
        # locals, not self.code: a store to val[] could alias self's fields for the compiler
        cdef double* val = self.spare
        cdef Instr* code = self.code
        cdef int* chain = self.chain
        cdef int* blk = self.blk
        cdef Instr c
        cdef double a, out
        cdef uint64_t bad = 0           # an OR of every output's _nonfinite_bits
        cdef uint64_t bad_block         # a block's: its address is taken, bad's is not (a
                                        # store to val[] could change it for the compiler)
        _ready(self)
        _sync_tapes(self)
        for s in range(base):
            val[s] = (<Value>self._nodes[s]).data
        _pack_weights(code, chain, blk, val, self.packed, self.packs, self.n_packs)
        out = val[base - 1] if base else 0.0   # "the slot before": the last leaf, for k = 0
        # An operand that is the output of the instruction right before comes from a
        # register, not back through memory (a store-to-load round trip on a sum's
        # critical path). `c.op >= FMA` (FMA is the highest code), not ==: gcc predicts
        # an equality with a constant false and moves the FMA case out of line, two taken
        # jumps away; with >= it stays in the loop (forward on the demo's tape: 5% fewer
        # instructions in callgrind). A neuron's sum, the FMAs that follow an FMA and add
        # to it (chain), runs in a loop of its own that decodes nothing but y and z.
        k = 0
        if far:
            while k < n:
                _prefetch(code + (k + PREFETCH if k + PREFETCH < n else n - 1), val)
                c = code[k]
                a = out if c.x == base + k - 1 else val[c.x]
                if c.op >= FMA:
                    if blk[k] > 0:
                        k += _block_forward(code, chain, blk, val, base, k, &bad_block,
                                            self.packed, self.packs)
                        bad |= bad_block
                        out = val[base + k - 1]
                        continue
                    out = a + val[c.y] * val[c.z]
                    val[base + k] = out
                    m = chain[k]
                    if m:
                        out = _run_chain(code, val, base, k + 1, m, out, n)
                        k += m
                else:
                    out = _forward(c.op, a, val[c.y])
                    val[base + k] = out
                bad |= _nonfinite_bits(out)     # a sum's last output answers for it
                k += 1
        else:
            while k < n:
                c = code[k]
                a = out if c.x == base + k - 1 else val[c.x]
                if c.op >= FMA:
                    if blk[k] > 0:
                        k += _block_forward(code, chain, blk, val, base, k, &bad_block,
                                            self.packed, self.packs)
                        bad |= bad_block
                        out = val[base + k - 1]
                        continue
                    out = a + val[c.y] * val[c.z]
                    val[base + k] = out
                    m = chain[k]
                    if m:
                        out = _run_chain(code, val, base, k + 1, m, out, 0)
                        k += m
                else:
                    out = _forward(c.op, a, val[c.y])
                    val[base + k] = out
                bad |= _nonfinite_bits(out)     # a sum's last output answers for it
                k += 1
        self.spare = self.val           # complete: the new values become current
        self.val = val
        self.stale_partials = True
        self.finite = (bad >> 63) == 0
        self._write_back(FIELD_DATA)
        return val[self.root_slot]

    def backward(self):
        """Gradients of the root, as root.backward() on a freshly built graph: op nodes'
        grads restart from 0, the root's is 1, leaves' grads accumulate."""
        cdef Py_ssize_t s, j, k, top, base = self.n_leaves
        cdef bint far = self.n_slots > PREFETCH_FROM
        cdef double* val = self.val
        cdef double* grd = self.grd
        cdef Instr* code = self.code
        cdef int* lo = self.lo
        cdef int* blk = self.blk
        cdef int* dirty = self.dirty
        cdef Instr c
        cdef PyObject* p
        cdef bint skip = True                   # may skip zero-grad runs (see _skip_regions)
        cdef bint finite = self.finite          # every output is: no run needs checking
        cdef _Finite known = _Finite(0, -1, False)  # nothing known yet
        _ready(self)
        _sync_tapes(self)
        for s in range(self.n_checked):         # raise before any grad changes
            k = self.checked[s]
            c = code[k]
            _check_partials(c.op, val[c.x], val[c.y])
        # Leaves accumulate: old grad + c1 + c2 + ... in eager's order. A leaf used once
        # gets one c: it starts from -0.0 (for which -0.0 + c is c, bit for bit) and
        # is added to its Value at the end, so its Value is visited once, not twice.
        # Skipped zeros leave a grad as it was, where adding them would too, but for
        # -0.0 + +0.0. Op nodes' grads start at +0.0, and a sum from +0.0 never gets to
        # -0.0; a leaf's grad may be -0.0 (set so by the user): then nothing is skipped.
        for j in range(self.n_shared):
            s = self.by_use[j]
            grd[s] = (<Value>self._nodes[s]).grad
            skip &= not _is_minus_zero(grd[s])
        for j in range(self.n_shared, base):
            s = self.by_use[j]
            grd[s] = -0.0
            skip &= not _is_minus_zero((<Value>self._nodes[s]).grad)
        # Op nodes' grads restart from 0 (the fused MULs' are filled in when read). Only
        # those the last backward wrote can be nonzero: a skipped run's are left +0.0.
        # (far: the instruction loop wrote the blocks' partial sums' grads too)
        _zero_grads(grd + base, dirty, self.n_dirty, self.wide, 0 if far else self.n_wide,
                    self.chain, blk)
        memset(grd + base + self.n_ops, 0, (self.n_slots - base - self.n_ops) * sizeof(double))
        grd[self.root_slot] = 1.0
        self.n_dirty = 0
        k = top = self.n_code - 1               # instructions k + 1..top run since the last skip
        while k >= 0:
            if blk[k] < 0 and not far:          # a block's activation or tail (core/blocks.pxi);
                k = _block_backward(code, self.chain, blk, val, grd, base, -blk[k] - 1, k, skip,
                                    self.packs)
                continue                        # on a tape bigger than the caches, the prefetching
                                                # loop below is faster
            j = lo[k]
            if (k - j >= SKIP_MIN and skip and grd[base + k] == 0.0
                    and (finite or _run_finite(val + base, j, k, &known))):
                if top > k:
                    dirty[2 * self.n_dirty] = k + 1
                    dirty[2 * self.n_dirty + 1] = top
                    self.n_dirty += 1
                k = top = j - 1
            elif far:
                k = _run_backward(code, k, base, val, grd, True)
            else:
                k = _run_backward(code, k, base, val, grd, False)
        if top >= 0:
            dirty[2 * self.n_dirty] = 0
            dirty[2 * self.n_dirty + 1] = top
            self.n_dirty += 1
        for j in range(self.n_shared):
            s = self.by_use[j]
            (<Value>self._nodes[s]).grad = grd[s]
        for j in range(self.n_shared, base):
            s = self.by_use[j]
            p = self._nodes[s]
            _add_grad(<Value>p, grd[s])
        self.stale_partial_grads = not far      # far: the instruction loop stored them
        self._write_back(FIELD_GRAD)

    def __len__(self):
        _ready(self)
        return self.n_leaves + self.n_ops

    def __reduce__(self):
        raise TypeError("cannot pickle 'Tape' object: record a new Tape from the unpickled root")

    @property
    def root(self):
        return self._root

    @property
    def leaves(self):
        """The recorded nodes without a rule (parameters, inputs, constants), in order."""
        _ready(self)
        return [<Value>self._nodes[s] for s in range(self.n_leaves)]

    @property
    def nodes(self):
        """Every recorded node, leaves first, then op nodes in topological order."""
        cdef Py_ssize_t j, k, base = self.n_leaves
        _ready(self)
        _observe()
        nodes = [<Value>self._nodes[s] for s in range(base)]
        j = 0
        for k in range(self.n_code):
            if self.code[k].op == FMA:     # its fused MUL came right before it
                nodes.append(<Value>self._nodes[base + self.n_code + j])
                j += 1
            nodes.append(<Value>self._nodes[base + k])
        return nodes

    def instructions(self):
        """The program a replay runs: (op, x, y, z) per instruction, slots as numbered
        when recorded (op codes as in micrograd/_engine.pxd; z is 0 but for FMA)."""
        _ready(self)
        return [(self.code[k].op, self.code[k].x, self.code[k].y, self.code[k].z)
                for k in range(self.n_code)]

    def _blocks(self):
        """The dense-layer blocks a replay runs together, each as (first instruction,
        neurons, FMAs per neuron, instructions per neuron, weights dense, relus and a chain
        of tails, its weights packed, its set (blocks sharing weights, biases and tails'
        weights) or 0) (core/blocks.pxi, packs.pxi; for tests)."""
        cdef Py_ssize_t k = 0, w
        _ready(self)
        found = []
        while k < self.n_code:
            if self.blk[k] > 0:
                w = _block_stride(self.blk, self.chain, k)
                found.append((k, self.blk[k], self.chain[k] + 1, w,
                              (self.blk[k + 1] & BLOCK_DENSE) != 0,
                              (self.blk[k + 1] & BLOCK_RELU_CHAIN) != 0,
                              _packed_of(self.blk, self.packs, self.packed, k) != NULL,
                              self.blk[k + 1] >> BLOCK_FLAG_BITS))
                k += self.blk[k] * w
            else:
                k += 1
        return found

    @property
    def n_instructions(self):
        """How many instructions a replay runs: one per op node, less the fused MULs."""
        _ready(self)
        return self.n_code

    def __repr__(self):
        _ready(self)
        return "Tape(%d nodes, %d leaves, %d instructions)" % (
            len(self), self.n_leaves, self.n_code)

# The walk: every node below a root in topological order, then eager backward over it.
# An explicit stack and per-node marks replace upstream's recursive build_topo and its
# visited set. Twin: micrograd/_pure/walk.py.

# Scratch arrays for the walk and for the order it fills, kept between calls: freeing
# and re-allocating them each call page-faults megabytes in again.
cdef _Buf _stack = _Buf(NULL, 0)
cdef _Buf _order = _Buf(NULL, 0)


cdef bint _walking = False      # a walk's marks, _order and _stack are in use
cdef unsigned long _walker = 0  # the thread walking, while _walking
cdef PyThread_type_lock _walk_lock = PyThread_allocate_lock()   # held while _walking


cdef int _begin_walk() except -1:
    """Claim the marks and scratch arrays for one walk (released by the caller).

    Python code runs in the middle of a walk: a _backward the user assigned, and with it
    the garbage collector's callbacks and the finalizers of what is freed (CPython up to
    3.11 also collects inside the walk itself, when it allocates: an error being raised;
    3.12+ collects only at eval-breaker checks, i.e. in bytecode). A backward() or Tape()
    from there would clobber the outer walk's arrays and marks, so it raises instead.
    Such Python code may also let another thread run: that thread's walk waits for this one."""
    global _walking, _walker
    if not PyThread_acquire_lock(_walk_lock, NOWAIT_LOCK):
        if _walker == PyThread_get_thread_ident():
            raise RuntimeError("backward() or Tape() called while another one is walking a graph "
                               "(from a _backward, a finalizer or a gc callback?)")
        with nogil:                     # another thread's walk, paused: let it finish
            PyThread_acquire_lock(_walk_lock, WAIT_LOCK)
    _walking = True
    _walker = PyThread_get_thread_ident()
    return 0


cdef inline void _end_walk() noexcept:
    global _walking, _walker
    _walking = False
    _walker = 0
    PyThread_release_lock(_walk_lock)
    _shrink(&_stack)
    _shrink(&_order)


cdef inline void _shrink(_Buf* buf) noexcept:
    """Give back what a walk over a huge graph grew buf to, beyond SCRATCH_CACHE items."""
    cdef PyObject** kept
    if buf.cap > SCRATCH_CACHE:
        kept = <PyObject**>realloc(buf.items, SCRATCH_CACHE * sizeof(PyObject*))
        if kept != NULL:                # else keep it all: nothing is lost
            buf.items = kept
            buf.cap = SCRATCH_CACHE


cdef int _grow(_Buf* buf) except -1:
    """Make room in buf for at least two more items."""
    cdef PyObject** grown = <PyObject**>realloc(buf.items, (2 * buf.cap + 1024) * sizeof(PyObject*))
    if grown == NULL:
        raise MemoryError()
    buf.items = grown
    buf.cap = 2 * buf.cap + 1024
    return 0


cdef inline void _set_flags(Value v, unsigned char bits) noexcept:
    v._flags |= bits        # v is borrowed here; `(<Value>p)._flags |= bits` would incref


cdef inline void _clear_flags(Value v, unsigned char bits) noexcept:
    v._flags &= ~bits


cdef inline void _set_field(Value v, int field, double x) noexcept:
    if field == FIELD_DATA:
        v.data = x
    else:
        v.grad = x


cdef inline void _add_grad(Value v, double g) noexcept:
    v.grad += g             # borrowed too: `(<Value>p).grad += g` would incref


cdef inline bint _python_rule(PyObject* v) noexcept:
    """Does backward reach v's _backward through Python (a function the user assigned,
    or a subclass, which may override it)?"""
    return (<Value>v)._flags & USER_RULE or _type_of(v) != <_TypeSlots*>Value


cdef inline bint _python_rules_possible() noexcept:
    """Has a _backward been assigned, or Value been subclassed (CPython keeps a table of
    a type's subclasses from the first one on)? Until then the walk need not check."""
    return _python_rules or (<_TypeSlots*>Value).tp_subclasses != NULL


cdef inline bint _wanted(PyObject* child, int mode) noexcept:
    """Should the walk enter child? Not twice, and not a leaf unless leaves are wanted
    (or it may have a _backward of its own)."""
    return not (<Value>child)._flags & VISITED and (
        mode & WALK_LEAVES or (<Value>child)._code != LEAF
        or (_python_rules_possible() and _python_rule(child)))


cdef Py_ssize_t _record(Value root, _Buf* order, int mode) except -1:
    """Fill order with every node below root, each after all its operands (post-order
    DFS); return how many.

    mode & WALK_CHECK: also raise (before anything is changed) what backward would raise.
    Without mode & WALK_LEAVES, leaves below root are neither recorded nor marked: they
    have no rule for backward to apply (a wide sum's leaves would double the walk).
    On success the recorded nodes stay marked: the caller clears the marks with
    _accumulate or _unmark. On error they are cleared here.
    """
    # Pointers here are borrowed (root keeps the graph alive): no refcounting per node.
    # Both arrays are used through locals: every flag set is a char store, which may
    # alias anything, so the compiler would reload a global _Buf's fields after each.
    cdef PyObject** stack = _stack.items
    cdef Py_ssize_t n = 0               # entries on stack
    cdef Py_ssize_t cap = _stack.cap
    cdef PyObject** out = order.items
    cdef Py_ssize_t n_out = 0           # entries in out
    cdef Py_ssize_t cap_out = order.cap
    cdef PyObject* p
    cdef PyObject* child
    cdef PyObject* emitting = NULL
    try:
        if cap < 3:
            _grow(&_stack)
            stack, cap = _stack.items, _stack.cap
        stack[0] = <PyObject*>root
        n = 1
        while n:
            p = stack[n - 1]
            if (<Value>p)._flags & VISITED:
                # operands done (or a stale duplicate entry): emit p once
                n -= 1
                if not (<Value>p)._flags & DONE:
                    _set_flags(<Value>p, DONE)
                    if n_out == cap_out:
                        emitting = p    # if this runs out of memory, p is on no list
                        _grow(order)
                        out, cap_out = order.items, order.cap
                        emitting = NULL
                    out[n_out] = p
                    n_out += 1
                    if (mode & WALK_CHECK and _can_raise((<Value>p)._code)
                            and not (<Value>p)._flags & USER_RULE):
                        _check_partials((<Value>p)._code, (<Value>p)._a.data, _y(<Value>p))
                continue
            while True:
                # first visit of p: push its operands (p stays below them on the stack),
                # then go straight on into the first operand, which is on top: the outer
                # loop would pick it next, through a first-or-second-visit branch the CPU
                # often mispredicts (going straight on: 13% fewer mispredicted branches
                # in the demo's walk, callgrind --branch-sim)
                _set_flags(<Value>p, VISITED)
                # the nodes made just before p lie just below it (the allocator hands
                # slots out in address order) and are mostly its operands and theirs:
                # start loading them before the walk reaches them through the pointers
                __builtin_prefetch(<char*>p - 128)
                __builtin_prefetch(<char*>p - 256)
                __builtin_prefetch(<char*>p - 512)
                if (<Value>p)._code == CUSTOM:
                    for c in _get_extra(<Value>p, EXTRA_CHILDREN):
                        if _wanted(<PyObject*>c, mode):
                            if n + 2 > cap:
                                _grow(&_stack)
                                stack, cap = _stack.items, _stack.cap
                            stack[n] = <PyObject*>c
                            n += 1
                    break
                if n + 2 > cap:             # room for both operands
                    _grow(&_stack)
                    stack, cap = _stack.items, _stack.cap
                child = _b(<Value>p)
                if child != NULL and _wanted(child, mode):
                    stack[n] = child
                    n += 1
                child = <PyObject*>(<Value>p)._a
                if child == <PyObject*>None or not _wanted(child, mode):
                    break
                stack[n] = child
                n += 1
                p = child
    except BaseException:
        _unmark(out, n_out)
        _unmark(stack, n)
        if emitting != NULL:
            _unmark(&emitting, 1)
        raise
    return n_out


cdef void _unmark(PyObject** nodes, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    cdef PyObject* p
    for i in range(n):
        p = nodes[i]                # a local: `<Value>nodes[i]` as an argument is increfed
        _clear_flags(<Value>p, VISITED | DONE)


cdef extern from *:
    void __builtin_prefetch(const void* addr) nogil   # GCC/Clang: start loading a cache line


cdef inline double _y(Value v) noexcept:
    """The y of v's rule: second operand's data, POWC's exponent, or 0.0 (unary)."""
    if v._code == POWC:
        return v._second.c
    return (<Value>_b(v)).data if _b(v) != NULL else 0.0


cdef inline void _chain(Value out) noexcept:
    """Apply out's local rule: add out.grad * d(out)/d(operand) to each operand's grad."""
    cdef double dx, dy
    cdef PyObject* b = _b(out)
    if out._a is None:          # LEAF or CUSTOM: no rule
        return
    _partials(out._code, out._a.data, _y(out), out.data, &dx, &dy)
    out._a.grad += dx * out.grad
    if b != NULL:
        _add_grad(<Value>b, dy * out.grad)


cdef int _accumulate(PyObject** nodes, Py_ssize_t n) except -1:
    """Apply every local rule, root first (reversed topological order); clear the marks.

    A _backward written in Python runs here too, in the same order; if it raises, the
    remaining nodes' marks are cleared and the error propagates (as upstream's would)."""
    cdef Py_ssize_t i
    cdef PyObject* p
    if not _python_rules_possible():
        for i in range(n - 1, -1, -1):
            if i >= 8:
                __builtin_prefetch(nodes[i - 8])    # large graphs: hide the cache miss
            p = nodes[i]
            _clear_flags(<Value>p, VISITED | DONE)
            _chain(<Value>p)
        return 0
    for i in range(n - 1, -1, -1):
        if i >= 8:
            __builtin_prefetch(nodes[i - 8])
        p = nodes[i]
        _clear_flags(<Value>p, VISITED | DONE)
        if _python_rule(p):
            try:
                (<object>p)._backward()
            except BaseException:
                _unmark(nodes, i)
                raise
        else:
            _chain(<Value>p)
    return 0


# Walks remembered: backward() on a graph shaped like one it walked before reuses that
# walk's order, after checking the graph node by node. Twin: none (the twin always walks;
# the order, and so every grad, is the same either way).
#
# A training loop builds the same graph every step, and the allocator hands freed slots
# out again lowest first (core/alloc.pxi), so this step's nodes lie at the addresses last
# step's had. The walk, a depth-first search, must load each node before it knows the
# next; the check reads the nodes from a list, so the CPU loads them ahead, and it sets
# no marks.

cdef _Walk _walks[RECALL_WALKS]     # what the last backward() walks found
cdef Py_ssize_t _calls = 0          # backward() calls so far: ages the entries
cdef Py_ssize_t _last_n = -1        # nodes in the last walk's order
cdef Py_ssize_t _unused = 0         # walks remembered since the last recall; past
cdef Py_ssize_t _skip = 0           #   RECALL_WALKS, this many more walks go unremembered
                                    #   (doubling up to 64): graphs never rebuilt in the
                                    #   same slots cost little more than the walk
cdef Py_ssize_t _recalled = 0       # backward() calls that reused a remembered walk
cdef Py_ssize_t _stale = 0          # remembered walks found no longer to fit their root
cdef Py_ssize_t _remembered = 0     # walks remembered


cdef int _still_shaped(_Walk* w) except -1:
    """Is the graph below w.root (the caller's root) today what w recorded, with nothing
    in it that backward would raise on?

    Root first, so every node is read only after a node already checked (or the root) has
    been found pointing at it: no node read here can have died since w was recorded."""
    cdef Py_ssize_t i
    cdef PyObject* p
    cdef _Link* link
    cdef PyObject** order = w.order
    for i in range(w.n - 1, -1, -1):
        if i >= PREFETCH:
            __builtin_prefetch(order[i - PREFETCH])     # a prefetch never faults
        p = order[i]
        link = &w.links[i]
        if ((<Value>p)._code != (link.code & LINK_CODE) or <PyObject*>(<Value>p)._a != link.a
                or (<Value>p)._second.b != link.b):
            return False
        if link.code & LINK_A_LEAF and (<Value>link.a)._code != LEAF:
            return False
        if link.code & LINK_B_LEAF and (<Value>link.b)._code != LEAF:
            return False
        if _can_raise((<Value>p)._code):
            try:
                _check_partials((<Value>p)._code, (<Value>p)._a.data, _y(<Value>p))
            except Exception:
                return False        # the walk raises it, from the node it would stop at
    return True


cdef _Walk* _recall(Value root) except? NULL:
    """The remembered walk that is still root's, or NULL."""
    cdef int k
    global _calls, _recalled, _stale, _unused, _skip
    _calls += 1
    if _python_rules_possible():    # a Python _backward may change the graph mid-walk
        return NULL
    for k in range(RECALL_WALKS):
        if _walks[k].root == <PyObject*>root and _walks[k].n > 0:
            if _still_shaped(&_walks[k]):
                _walks[k].used = _calls
                _recalled += 1
                _unused = _skip = 0
                return &_walks[k]
            _walks[k].n = 0         # stale: let the walk record it again
            _stale += 1
    return NULL


cdef void _remember(Value root, PyObject** order, Py_ssize_t n) noexcept:
    """Keep the walk just done (order, n nodes below root) if its graph looks like one a
    loop rebuilds: as many nodes as the walk before it."""
    global _last_n, _unused, _skip, _remembered
    cdef int k, slot = 0
    cdef Py_ssize_t i
    cdef PyObject* p
    cdef PyObject* a
    cdef PyObject* b
    cdef _Link* links
    cdef PyObject** kept
    cdef _Walk* w
    if n != _last_n or n == 0 or n > SCRATCH_CACHE or _python_rules_possible():
        _last_n = n
        return
    if _skip:
        _skip -= 1
        return
    for k in range(RECALL_WALKS):       # the oldest, or the one root had
        if _walks[k].root == <PyObject*>root or _walks[k].used < _walks[slot].used:
            slot = k
            if _walks[k].root == <PyObject*>root:
                break
    w = &_walks[slot]
    w.n = 0
    if w.cap < n:
        kept = <PyObject**>realloc(w.order, n * sizeof(PyObject*))
        if kept == NULL:
            return
        w.order = kept
        links = <_Link*>realloc(w.links, n * sizeof(_Link))
        if links == NULL:
            return
        w.links = links
        w.cap = n
    for i in range(n):
        p = order[i]
        a = <PyObject*>(<Value>p)._a
        if (<Value>p)._code == CUSTOM or a == <PyObject*>None:  # children in a tuple: walked
            return
        w.order[i] = p
        w.links[i].a = a
        w.links[i].b = (<Value>p)._second.b
        w.links[i].code = (<Value>p)._code
        if (<Value>a)._code == LEAF:
            w.links[i].code |= LINK_A_LEAF
        b = _b(<Value>p)
        if b != NULL and (<Value>b)._code == LEAF:
            w.links[i].code |= LINK_B_LEAF
    w.root = <PyObject*>root
    w.n = n
    w.used = _calls
    _remembered += 1
    _unused += 1
    if _unused >= RECALL_WALKS:
        _skip = 1 << min(_unused - RECALL_WALKS, 6)


def _recall_stats():
    """(backward() calls that reused a remembered walk, remembered walks found stale, walks
    remembered): how tests tell that the check, and not the walk, served a backward()."""
    return _recalled, _stale, _remembered

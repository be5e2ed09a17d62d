# The node allocator: Value's tp_alloc and tp_dealloc, written here and installed into
# the type by _install_slots (Cython's generated pair does more than a node needs).
# The twin has no counterpart: CPython allocates and frees its nodes.
#
# Freeing: a deep chain must not free itself by C recursion (tp_dealloc calling
# tp_dealloc a million times overflows the C stack). A dying node hands what it was the
# last owner of (its operands, its side-table entry with a hand-built node's children)
# to the _pending stack; the outermost dealloc drains it.
# Memory: nodes live in 2 MiB chunks of 56-byte slots, handed out in order (so a graph
# built in one go lies in memory in creation order) and reused when freed, lowest address
# first (so a graph built on the slots of the last one does too), from the first-mapped
# chunk that has room (so a graph rebuilt once its predecessor died takes the very slots
# the predecessor had, however many graphs are alive). A few empty chunks are kept, so
# the next training step's graph is built without the system allocator; the rest go back
# to it.
cdef extern from "Python.h":
    ctypedef struct _TypeSlots "PyTypeObject":     # the slots we read or replace
        Py_ssize_t tp_basicsize
        void (*tp_dealloc)(PyObject*)
        PyObject* (*tp_alloc)(_TypeSlots*, Py_ssize_t)
        void (*tp_free)(void*)
        PyObject* tp_dict
        int (*tp_setattro)(PyObject*, PyObject*, PyObject*)
        void* tp_subclasses
    _TypeSlots* _type_of "Py_TYPE"(PyObject*)
    void _fetch_error "PyErr_Fetch"(PyObject**, PyObject**, PyObject**)
    void _restore_error "PyErr_Restore"(PyObject*, PyObject*, PyObject*)
    void _decref "Py_DECREF"(PyObject*)

cdef extern from *:
    """
    /* The sanitizer build (setup.py, MICROGRAD_SANITIZE=1): AddressSanitizer cannot see
       inside our chunks, so the allocator poisons every slot that holds no live node and
       unpoisons a slot only to hand it out. Reading a freed node is then reported. */
    #if defined(__has_feature)
    #if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
    #define __SANITIZE_ADDRESS__ 1
    #endif
    #endif
    #if defined(__SANITIZE_ADDRESS__)
    #include <sanitizer/asan_interface.h>
    #define MG_SANITIZED 1
    static void mg_poison(void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
    static void mg_unpoison(void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
    #else
    #define MG_SANITIZED 0
    static void mg_poison(void* p, size_t n) { (void)p; (void)n; }
    static void mg_unpoison(void* p, size_t n) { (void)p; (void)n; }
    #endif
    #if defined(_WIN32)
    #include <malloc.h>
    static void* mg_chunk_alloc(size_t n) { return _aligned_malloc(n, n); }
    static void mg_chunk_free(void* p, size_t n) { mg_unpoison(p, n); _aligned_free(p); }
    #else
    /* Straight from the kernel, so that a freed chunk leaves the process (malloc would
       keep it in its heap): map 2n bytes, unmap all but an n-aligned middle. A 2 MiB
       chunk can then be one huge page: one page fault and one TLB entry for 37,363
       nodes instead of 512 of each (where the system allows it; a hint otherwise). */
    #include <stdint.h>
    #include <sys/mman.h>
    static void* mg_chunk_alloc(size_t n) {
        char* p = (char*)mmap(NULL, 2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char* a;
        if (p == (char*)MAP_FAILED) return NULL;
        a = (char*)(((uintptr_t)p + n - 1) & ~(uintptr_t)(n - 1));
        if (a > p) munmap(p, a - p);
        munmap(a + n, p + n - a);
    #ifdef MADV_HUGEPAGE
        madvise(a, n, MADV_HUGEPAGE);
    #endif
        return a;
    }
    static void mg_chunk_free(void* p, size_t n) { mg_unpoison(p, n); munmap(p, n); }
    #endif
    /* The index of the lowest set bit of x != 0: a chunk's first free slot in a word. */
    #if defined(_MSC_VER)
    #include <intrin.h>
    static int mg_lowest_bit(unsigned long long x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
    #define __builtin_prefetch(p) _mm_prefetch((const char*)(p), _MM_HINT_T0)
    #else
    static int mg_lowest_bit(unsigned long long x) { return __builtin_ctzll(x); }
    #endif
    /* A node's birth and death. PyObject_Init takes two calls into the interpreter to
       set a new node's type and refcount; Py_DECREF, two (_Py_Dealloc, then tp_dealloc)
       to free it. A release build before 3.13 does nothing more in them (PyObject_Init
       also tells tracemalloc, which does not trace our chunks), so both are done inline.
       Debug builds keep books on every object, and 3.13 reports them to a ref tracer:
       there the calls stay. */
    #if defined(Py_REF_DEBUG) || defined(Py_TRACE_REFS) || PY_VERSION_HEX >= 0x030D0000
    #define MG_QUIET_LIFECYCLE 0
    #define mg_init_node(o, t) PyObject_Init((o), (PyTypeObject*)(t))
    #else
    #define MG_QUIET_LIFECYCLE 1
    static inline PyObject* mg_init_node(PyObject* o, void* t) {
        Py_SET_TYPE(o, (PyTypeObject*)t);
        if (PyType_HasFeature((PyTypeObject*)t, Py_TPFLAGS_HEAPTYPE)) Py_INCREF((PyObject*)t);
        Py_SET_REFCNT(o, 1);
        return o;
    }
    #endif
    """
    void* _chunk_alloc "mg_chunk_alloc"(size_t n) noexcept   # n bytes aligned to n
    void _chunk_free "mg_chunk_free"(void* p, size_t n) noexcept
    void _poison "mg_poison"(void* p, size_t n) noexcept     # no-ops unless sanitized
    void _unpoison "mg_unpoison"(void* p, size_t n) noexcept
    PyObject* _init_node "mg_init_node"(PyObject* o, _TypeSlots* t) noexcept   # o, initialised
    bint QUIET_LIFECYCLE "MG_QUIET_LIFECYCLE"   # nodes born and dying inline (see above)
    void _set_refcnt "Py_SET_REFCNT"(PyObject* o, Py_ssize_t n) noexcept
    bint SANITIZED "MG_SANITIZED"
    PyObject* PyErr_NoMemory() noexcept     # sets MemoryError; tp_alloc then returns NULL
    int _lowest_bit "mg_lowest_bit"(unsigned long long x) noexcept   # x != 0


cdef Py_ssize_t _node_size = 0      # Value's tp_basicsize (set by _install_slots)
cdef Py_ssize_t _per_chunk = 0      # node slots per chunk
cdef uint64_t _slot_magic = 0       # (offset * _slot_magic) >> 32: offset // _node_size, for
                                    # the multiples of it below 2 MiB (no division per free)
cdef _Chunk* _current = NULL        # nodes are allocated from here...
cdef _Chunk* _partial = NULL        # ...and, when it is full, from these chunks' room
cdef _Chunk* _spare[SPARE_CHUNKS]   # empty chunks, kept rather than returned to the system
cdef int _n_spare = 0
cdef uint64_t _n_mapped = 0         # chunks mapped so far: the next one's serial
cdef PyObject** _pending = NULL             # children whose last owner just died
cdef Py_ssize_t _n_pending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False                 # an outer dealloc is draining _pending


cdef inline void _unlink(_Chunk* c) noexcept:
    global _partial
    if c.prev != NULL:
        c.prev.next = c.next
    else:
        _partial = c.next
    if c.next != NULL:
        c.next.prev = c.prev
    c.listed = False


cdef void _list(_Chunk* c) noexcept:
    """Put c, which has room, into _partial, first-mapped first."""
    global _partial
    cdef _Chunk* before = NULL
    cdef _Chunk* after = _partial
    while after != NULL and after.serial < c.serial:
        before = after
        after = after.next
    c.prev = before
    c.next = after
    if before != NULL:
        before.next = c
    else:
        _partial = c
    if after != NULL:
        after.prev = c
    c.listed = True


cdef void _retire(_Chunk* c) noexcept:
    """c just emptied (and is not the current chunk): keep it as a spare, or unmap it or
    the last-mapped spare (the spares kept are those a rebuilt graph takes first)."""
    global _n_spare
    cdef uint64_t serial = c.serial
    cdef int k, last = 0
    if c.listed:
        _unlink(c)
    if _n_spare == SPARE_CHUNKS:
        for k in range(1, _n_spare):
            if _spare[k].serial > _spare[last].serial:
                last = k
        if serial > _spare[last].serial:
            _chunk_free(c, CHUNK)
            return
        _chunk_free(_spare[last], CHUNK)
        _n_spare -= 1
        _spare[last] = _spare[_n_spare]
    memset(c, 0, sizeof(_Chunk))
    c.serial = serial                   # a spare keeps its place in the order
    _spare[_n_spare] = c
    _n_spare += 1


cdef _Chunk* _fresh_chunk() noexcept:
    """A chunk to allocate from: the first-mapped one with room (freed slots, or a spare),
    else a new one (NULL if the system has no memory)."""
    global _n_spare, _n_mapped
    cdef _Chunk* c = _partial
    cdef int k, first = -1
    for k in range(_n_spare):
        if first < 0 or _spare[k].serial < _spare[first].serial:
            first = k
    if first >= 0 and (c == NULL or _spare[first].serial < c.serial):
        c = _spare[first]
        _n_spare -= 1
        _spare[first] = _spare[_n_spare]
        return c
    if c != NULL:
        _unlink(c)
        return c
    c = <_Chunk*>_chunk_alloc(CHUNK)
    if c != NULL:
        memset(c, 0, sizeof(_Chunk))
        c.serial = _n_mapped
        _n_mapped += 1
        _poison(<char*>c + CHUNK_HEADER, CHUNK - CHUNK_HEADER)
    return c


cdef void _make_current(_Chunk* c) noexcept:
    """Allocate from c, mapped before the current chunk, now that it has room."""
    global _current
    cdef _Chunk* old = _current
    if c.listed:
        _unlink(c)
    _current = c
    if old.live == 0:
        _retire(old)
    elif old.n_free or old.used < _per_chunk:
        _list(old)                      # else it is full: listed when a node in it dies


cdef PyObject* _value_alloc(_TypeSlots* tp, Py_ssize_t nitems) noexcept:
    """tp_alloc: a zeroed node, from the current chunk (pymalloc would round 56 bytes
    up to 64: its blocks are 16-byte aligned; doubles and pointers need only 8)."""
    cdef PyObject* o = _take_slot()
    if o == NULL:
        return NULL
    return _init_node(o, tp)


cdef inline PyObject* _take_slot() noexcept:
    """A zeroed slot for a node (NULL and MemoryError if none is left)."""
    global _current
    cdef _Chunk* c = _current
    cdef PyObject* o
    cdef Py_ssize_t s, w
    if c == NULL or (c.n_free == 0 and c.used == _per_chunk):
        c = _fresh_chunk()
        if c == NULL:
            PyErr_NoMemory()
            return NULL
        _current = c                    # the full one is listed again when a node in it dies
    if c.n_free:
        # The lowest free slot, not the last one freed: a graph freed root first and
        # rebuilt slot by slot from a LIFO list lies scattered, and every walk over it
        # (backward, the free) waits on a cache miss per node; in creation order, the
        # hardware and the walk's prefetches run ahead (docs/porting.md, 2.7). Found in
        # two steps, through the bitmap of the bitmap's nonzero words: at most
        # FREE_SUMMARY words are read, however full the chunk's low slots are (fewer
        # from c.low: a graph rebuilt in order finds its next slot at once).
        s = c.low
        while c.free_words[s] == 0:
            s += 1
        c.low = s
        w = s * 64 + _lowest_bit(c.free_words[s])
        o = <PyObject*>(<char*>c + CHUNK_HEADER + (w * 64 + _lowest_bit(c.free_bits[w])) * _node_size)
        c.free_bits[w] &= c.free_bits[w] - 1
        if c.free_bits[w] == 0:
            c.free_words[s] &= c.free_words[s] - 1
        c.n_free -= 1
        _unpoison(o, _node_size)
    else:
        o = <PyObject*>(<char*>c + CHUNK_HEADER + c.used * _node_size)
        _unpoison(o, _node_size)
        c.used += 1
    c.live += 1
    memset(o, 0, sizeof(Value))         # a constant size: a few stores, no call
    return o


cdef inline void _value_free(PyObject* o) noexcept:
    """Return a dead node's slot to its chunk; hand back chunks that empty out."""
    cdef _Chunk* c = <_Chunk*>(<size_t>o & ~(<size_t>CHUNK - 1))
    cdef uint64_t i = ((<size_t>o - <size_t>c - CHUNK_HEADER) * _slot_magic) >> 32
    cdef uint64_t w = i >> 6
    if c.free_bits[w] == 0:
        c.free_words[w >> 6] |= (<uint64_t>1) << (w & 63)
        if <int>(w >> 6) < c.low:
            c.low = w >> 6
    c.free_bits[w] |= (<uint64_t>1) << (i & 63)
    c.n_free += 1
    _poison(o, _node_size)
    c.live -= 1
    if c == _current:
        return
    if c.serial < _current.serial:      # room before the current chunk: allocate there
        _make_current(c)
    elif c.live == 0:                   # empty: keep it as a spare, or give it back
        _retire(c)
    elif not c.listed:                  # its first freed slot: offer it for reuse
        _list(c)


cdef inline void _release(PyObject* child) noexcept:
    """Drop a dying node's reference to child without recursing into child's dealloc."""
    global _pending, _cap_pending, _n_pending
    cdef PyObject** grown
    if child == <PyObject*>None or Py_REFCNT(child) > 1:
        _decref(child)      # someone else keeps it alive: this frees nothing
        return
    if _n_pending == _cap_pending:
        grown = <PyObject**>realloc(_pending, (2 * _cap_pending + 1024) * sizeof(PyObject*))
        if grown == NULL:
            _decref(child)  # out of memory: fall back to ordinary (recursive) freeing
            return
        _pending = grown
        _cap_pending = 2 * _cap_pending + 1024
    _pending[_n_pending] = child     # our reference moves to the stack
    _n_pending += 1


cdef void _drop_extra(PyObject* o) noexcept:
    """Take a dying node's side-table entry out and release it as the node's operands
    are released: the entry holds a hand-built node's children (and a rule's closure,
    attributes), and freeing it here would free a deep chain of such nodes by C
    recursion."""
    # A dealloc can run while an exception is being raised: keep it intact.
    cdef PyObject* t
    cdef PyObject* v
    cdef PyObject* tb
    cdef PyObject* held = NULL
    cdef PyObject* children
    cdef Py_ssize_t i
    _fetch_error(&t, &v, &tb)
    try:
        entry = _extras.pop(<Py_ssize_t>o, None)     # keyed by id(node), i.e. its address
        if entry is not None:
            children = PyList_GET_ITEM(<PyObject*>entry, EXTRA_CHILDREN)
            if children != <PyObject*>None:
                for i in range(PyTuple_GET_SIZE(children)):
                    _note_rule_child(PyTuple_GET_ITEM(children, i))  # borrowed: a loop
                                                                     # variable would own one
            Py_INCREF(entry)
            held = <PyObject*>entry
        entry = None
    except BaseException:
        pass
    _restore_error(t, v, tb)
    if held != NULL:
        _release(held)      # the outermost dealloc drains it


cdef void _value_dealloc(PyObject* o) noexcept:
    """tp_dealloc: release the children (iteratively), recycle the memory."""
    global _draining, _n_pending
    cdef PyObject* p
    _dismantle(o)
    if _draining:
        return
    _draining = True
    while _n_pending:
        _n_pending -= 1
        p = _pending[_n_pending]
        if QUIET_LIFECYCLE and Py_REFCNT(p) == 1 and _type_of(p) == <_TypeSlots*>Value:
            # the pending stack holds its last reference: what Py_DECREF would do,
            # without its two calls (the interpreter keeps no books on the death)
            _set_refcnt(p, 0)
            _dismantle(p)
        else:
            _decref(p)      # frees it: its dealloc pushes its children
    _draining = False


cdef inline void _dismantle(PyObject* o) noexcept:
    """A dead node's own part of tp_dealloc: its side-table entry and operands handed to
    the pending stack, its memory recycled."""
    if (<Value>o)._flags & HAS_EXTRA:
        _drop_extra(o)
    if _python_rules:
        _note_rule_child(<PyObject*>(<Value>o)._a)
        if _b(<Value>o) != NULL:
            _note_rule_child(_b(<Value>o))
    _release(<PyObject*>(<Value>o)._a)     # the dying node's two references
    if _b(<Value>o) != NULL:
        _release(_b(<Value>o))
    if _type_of(o) == <_TypeSlots*>Value:
        _value_free(o)
    else:                   # a subclass instance: CPython allocated it (with a GC header)
        _type_of(o).tp_free(o)


if sizeof(_Chunk) > CHUNK_HEADER:     # the header would overlap the first node's slot
    raise SystemError("micrograd: _Chunk is %d bytes, CHUNK_HEADER %d" % (sizeof(_Chunk), CHUNK_HEADER))


cdef void _install_slots(type node_type) noexcept:
    """Install the pair above, and the attribute setter of core/extras.pxi, into Value
    (and tell CPython the type changed)."""
    global _node_size, _per_chunk, _slot_magic
    _node_size = (<_TypeSlots*>node_type).tp_basicsize
    _per_chunk = min((CHUNK - CHUNK_HEADER) // _node_size, FREE_WORDS * 64)
    _slot_magic = ((<uint64_t>1 << 32) + _node_size - 1) // _node_size
    (<_TypeSlots*>node_type).tp_alloc = _value_alloc
    (<_TypeSlots*>node_type).tp_dealloc = _value_dealloc
    (<_TypeSlots*>node_type).tp_setattro = _value_setattro
    PyType_Modified(node_type)

# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled core of micrograd: a scalar Value node, its op rules, and the tape.

Read this file next to ``micrograd/_pure.py``, its pure-Python twin: the same op
codes, the same rules in the same order, the same iterative topological walk.

Where upstream micrograd gives every node a Python ``set`` of children and a
``_backward`` closure, here a node is a 56-byte C struct: two child pointers (the
second shares its 8 bytes with a constant exponent) and an op code. The op code
selects both the forward rule (``_forward``) and the local gradients
(``_partials``); the two are written side by side below.
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.math cimport pow, exp, log, tanh, floor, isfinite, isinf
from libc.stdlib cimport calloc, realloc, free
from libc.string cimport memcpy, memset
import weakref
import numbers as _numbers

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject* o)
    void PyType_Modified(type t)

# ---------------------------------------------------------------------------------
# Op codes. One byte per node selects its forward rule and its local-gradient rule.
# The twin (_pure.py) uses the same numbers.
# ---------------------------------------------------------------------------------
cdef enum:
    LEAF = 0      # no rule: parameters, inputs, constants
    ADD = 1       # a + b
    MUL = 2       # a * b
    POWC = 3      # a ** c, c a plain number (upstream's only kind of power)
    POW = 4       # a ** b, both Values: the exponent gets a gradient too
    RELU = 5      # max(a, 0)
    TANH = 6      # tanh(a)
    EXP = 7       # e ** a
    LOG = 8       # ln(a)
    SIGMOID = 9   # 1 / (1 + e ** -a)
    CUSTOM = 10   # built by hand as Value(data, _children, _op): children walked, no rule
    FMA = 11      # Tape only: acc + a*b, an ADD fused with the MUL that feeds only it

# Bits of Value._flags.
cdef enum:
    VISITED = 1      # entered by the current topological walk (cleared when it ends)
    DONE = 2         # appended to the current walk's tape (cleared when it ends)
    INT_EXP = 4      # POWC's exponent was an int: _op shows '**2', not '**2.0'
    HAS_EXTRA = 8    # this node has an entry in _extras (label, hand-built _op/_children)
    TAPED = 16       # an op node recorded by a live Tape (its data may live in the tape)

# Rare per-node data lives here, keyed by id(node), so that the common node stays 56
# bytes: {id: [label, op string or None, children tuple or None]}. Only str labels are
# stored, and children are always older nodes, so no reference cycle can pass through it.
cdef dict _extras = {}

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid', CUSTOM: ''}


# ---------------------------------------------------------------------------------
# Python's float semantics for the three functions that can fail. CPython's float
# ``**`` and ``math`` raise on these inputs; the C library would silently give inf/nan.
# ---------------------------------------------------------------------------------
cdef double _pow(double x, double y) except? -1.0:
    if x == 0.0 and y < 0.0 and isfinite(y):
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if x < 0.0 and isfinite(x) and isfinite(y) and y != floor(y):
        # float ** would return a complex number here; a scalar engine has no use for one
        raise ValueError("negative number cannot be raised to a fractional power")
    cdef double r = pow(x, y)
    if isinf(r) and isfinite(x) and isfinite(y):
        raise OverflowError("(34, 'Numerical result out of range')")
    return r


cdef double _exp(double x) except? -1.0:
    cdef double r = exp(x)
    if isinf(r) and isfinite(x):
        raise OverflowError("math range error")
    return r


cdef double _log(double x) except? -1.0:
    if x <= 0.0:
        raise ValueError("math domain error")
    return log(x)


cdef inline double _sigmoid(double x) noexcept:
    # Two forms so that exp() never overflows: e**-x for x >= 0, e**x otherwise.
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------
# The rule book: each op's forward rule and its local gradients, side by side.
# Both work on plain doubles, so eager backward() (on Value fields) and Tape replay
# (on dense arrays) share them. x is the first operand's data; y is the second
# operand's data, or POWC's constant exponent, or 0.0 for unary ops.
# ---------------------------------------------------------------------------------
cdef inline double _forward(int op, double x, double y) except? -1.0:
    """out.data."""
    if op == ADD:
        return x + y
    elif op == MUL:
        return x * y
    elif op == POWC or op == POW:
        return _pow(x, y)
    elif op == RELU:
        return 0.0 if x < 0.0 else x
    elif op == TANH:
        return tanh(x)
    elif op == EXP:
        return _exp(x)
    elif op == LOG:
        return _log(x)
    elif op == SIGMOID:
        return _sigmoid(x)
    raise AssertionError("no forward rule for op %d" % op)


cdef inline void _partials(int op, double x, double y, double out,
                           double* dx, double* dy) noexcept:
    """d(out)/dx and d(out)/dy: what the chain rule multiplies out.grad by.

    Never raises: the inputs where Python would (0 ** negative, 1/0) are rejected
    first by _check_partials, so that a failing backward changes no grad.
    """
    dy[0] = 0.0
    if op == ADD:
        dx[0] = 1.0
        dy[0] = 1.0
    elif op == MUL:
        dx[0] = y
        dy[0] = x
    elif op == POWC:                    # y is a constant: no gradient for it
        dx[0] = y * pow(x, y - 1.0)
    elif op == POW:
        dx[0] = y * pow(x, y - 1.0)
        if x != 0.0:                    # 0 ** y is flat in y (for y > 0)
            dy[0] = out * log(x)
    elif op == RELU:
        dx[0] = out > 0.0
    elif op == TANH:
        dx[0] = 1.0 - out * out
    elif op == EXP:
        dx[0] = out
    elif op == LOG:
        dx[0] = 1.0 / x
    elif op == SIGMOID:
        dx[0] = out * (1.0 - out)
    else:                               # LEAF and CUSTOM have no rule
        dx[0] = 0.0


# FMA, the tape's one fused op: out = acc + a*b, with partials 1 for acc, b for a and
# a for b. A Tape writes ADD(acc, MUL(a, b)) this way when the MUL node feeds only that
# ADD and comes right before it: one instruction instead of two, and the same floats,
# in the same order, as the two ops (the build turns off FMA contraction, so a*b is
# rounded before the add). Its forward and backward are written in Tape's loops.


cdef inline bint _can_raise(int op) noexcept:
    """Ops whose partials can raise (see _check_partials)."""
    return op == POWC or op == POW or op == LOG


cdef int _check_partials(int op, double x, double y) except -1:
    """Raise what Python would raise computing op's partials at (x, y)."""
    if op == POWC or op == POW:
        _pow(x, y - 1.0)
        if op == POW and x < 0.0:
            raise ValueError("math domain error: the exponent's gradient needs "
                             "log(base), and the base %r is negative" % x)
    elif op == LOG and x == 0.0:
        raise ZeroDivisionError("float division by zero")
    return 0


# ---------------------------------------------------------------------------------
# Allocating and freeing nodes: Value's tp_alloc and tp_dealloc, written here and
# installed into the type below (Cython's generated pair does more than a node needs).
#
# Freeing: a deep chain must not free itself by C recursion (tp_dealloc calling
# tp_dealloc a million times overflows the C stack). A dying node hands the children
# it was the last owner of to the _pending stack; the outermost dealloc drains it.
# Memory: nodes live in 2 MiB chunks of 56-byte slots, handed out in order (so a graph
# built in one go lies in memory in creation order) and reused when freed. A few empty
# chunks are kept, so the next training step's graph is built without the system
# allocator; the rest go back to it.
# ---------------------------------------------------------------------------------
cdef extern from "Python.h":
    ctypedef struct _TypeSlots "PyTypeObject":     # the slots we read or replace
        Py_ssize_t tp_basicsize
        void (*tp_dealloc)(PyObject*)
        PyObject* (*tp_alloc)(_TypeSlots*, Py_ssize_t)
    PyObject* _init_object "PyObject_Init"(PyObject*, _TypeSlots*)
    void _fetch_error "PyErr_Fetch"(PyObject**, PyObject**, PyObject**)
    void _restore_error "PyErr_Restore"(PyObject*, PyObject*, PyObject*)
    void _decref "Py_DECREF"(PyObject*)

cdef extern from *:
    """
    #if defined(_WIN32)
    #include <malloc.h>
    static void* mg_chunk_alloc(size_t n) { return _aligned_malloc(n, n); }
    static void mg_chunk_free(void* p, size_t n) { _aligned_free(p); }
    #else
    /* Straight from the kernel, so that a freed chunk leaves the process (malloc would
       keep it in its heap): map 2n bytes, unmap all but an n-aligned middle. A 2 MiB
       chunk can then be one huge page: one page fault and one TLB entry for 37,448
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
    static void mg_chunk_free(void* p, size_t n) { munmap(p, n); }
    #endif
    """
    void* _chunk_alloc "mg_chunk_alloc"(size_t n) noexcept   # n bytes aligned to n
    void _chunk_free "mg_chunk_free"(void* p, size_t n) noexcept
    PyObject* PyErr_NoMemory() noexcept     # sets MemoryError; tp_alloc then returns NULL

cdef enum:
    CHUNK = 1 << 21         # bytes per chunk, and its alignment: rounding a node's address
                            # down to a multiple of CHUNK finds its chunk's header; the
                            # size of an x86-64 huge page
    CHUNK_HEADER = 64       # the _Chunk at its start; nodes follow
    SPARE_CHUNKS = 2        # empty chunks kept for the next graph (a demo step's is 3.5 MiB)

ctypedef struct _Chunk:     # the head of a chunk of node slots
    void* free              # freed slots, linked through their first word
    Py_ssize_t live         # nodes allocated here and not yet freed
    Py_ssize_t used         # slots handed out so far by bumping; the rest are untouched
    _Chunk* prev            # links in _partial, the chunks with freed slots to reuse
    _Chunk* next
    bint listed             # in _partial

cdef Py_ssize_t _node_size = 0      # Value's tp_basicsize (set below the class)
cdef Py_ssize_t _per_chunk = 0      # node slots per chunk
cdef _Chunk* _current = NULL        # nodes are allocated from here...
cdef _Chunk* _partial = NULL        # ...and, when it is full, from these chunks' freed slots
cdef _Chunk* _spare[SPARE_CHUNKS]   # empty chunks, kept rather than returned to the system
cdef int _n_spare = 0
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


cdef _Chunk* _fresh_chunk() noexcept:
    """A chunk to allocate from: one with freed slots, a spare, or a new one (NULL if
    the system has no memory)."""
    global _n_spare
    cdef _Chunk* c = _partial
    if c != NULL:
        _unlink(c)
        return c
    if _n_spare:
        _n_spare -= 1
        return _spare[_n_spare]
    c = <_Chunk*>_chunk_alloc(CHUNK)
    if c != NULL:
        memset(c, 0, sizeof(_Chunk))
    return c


cdef PyObject* _value_alloc(_TypeSlots* tp, Py_ssize_t nitems) noexcept:
    """tp_alloc: a zeroed node, from the current chunk (pymalloc would round 56 bytes
    up to 64: its blocks are 16-byte aligned; doubles and pointers need only 8)."""
    global _current
    cdef _Chunk* c = _current
    cdef PyObject* o
    if c == NULL or (c.free == NULL and c.used == _per_chunk):
        c = _fresh_chunk()
        if c == NULL:
            PyErr_NoMemory()
            return NULL
        _current = c                    # the full one is listed again when a node in it dies
    if c.free != NULL:
        o = <PyObject*>c.free
        c.free = (<void**>c.free)[0]
    else:
        o = <PyObject*>(<char*>c + CHUNK_HEADER + c.used * _node_size)
        c.used += 1
    c.live += 1
    memset(o, 0, _node_size)
    return _init_object(o, tp)          # type, refcount 1, and the interpreter's own
                                        # bookkeeping of new objects (debug builds, tracers)


cdef inline void _value_free(PyObject* o) noexcept:
    """Return a dead node's slot to its chunk; hand back chunks that empty out."""
    global _partial, _n_spare
    cdef _Chunk* c = <_Chunk*>(<size_t>o & ~(<size_t>CHUNK - 1))
    (<void**>o)[0] = c.free
    c.free = <void*>o
    c.live -= 1
    if c == _current:
        return
    if c.live == 0:                     # empty: keep it as a spare, or give it back
        if c.listed:
            _unlink(c)
        if _n_spare < SPARE_CHUNKS:
            memset(c, 0, sizeof(_Chunk))
            _spare[_n_spare] = c
            _n_spare += 1
        else:
            _chunk_free(c, CHUNK)
    elif not c.listed:                  # its first freed slot: offer it for reuse
        c.prev = NULL
        c.next = _partial
        if _partial != NULL:
            _partial.prev = c
        _partial = c
        c.listed = True


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
    # A dealloc can run while an exception is being raised: keep it intact.
    cdef PyObject *t, *v, *tb
    _fetch_error(&t, &v, &tb)
    try:
        _extras.pop(<Py_ssize_t>o, None)     # keyed by id(node), i.e. its address
    except BaseException:
        pass
    _restore_error(t, v, tb)


cdef void _value_dealloc(PyObject* o) noexcept:
    """tp_dealloc: release the children (iteratively), recycle the memory."""
    global _draining, _n_pending
    if (<Value>o)._flags & HAS_EXTRA:
        _drop_extra(o)
    _release(<PyObject*>(<Value>o)._a)     # the dying node's two references
    if _b(<Value>o) != NULL:
        _release(_b(<Value>o))
    _value_free(o)
    if _draining:
        return
    _draining = True
    while _n_pending:
        _n_pending -= 1
        _decref(_pending[_n_pending])   # frees it: its dealloc pushes its children
    _draining = False


# ---------------------------------------------------------------------------------
# The node.
# ---------------------------------------------------------------------------------
ctypedef union _Second:         # a node's second input; which member is set, its op says:
    PyObject* b                 # ADD, MUL, POW: the second operand (an owned reference);
                                # NULL for leaves and unary ops
    double c                    # POWC: the constant exponent


@cython.final        # no subclasses: attribute access and calls bind statically
@cython.no_gc        # children are always older nodes, so no cycle can exist: skip the GC
cdef class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""
    cdef public double data     # forward value (always a C double)
    cdef public double grad     # d(root)/d(self), accumulated by backward()
    cdef Value _a               # first operand, None for a leaf
    cdef _Second _second        # second operand or POWC's exponent: read with _b and _y
    cdef unsigned char _code    # op code: selects the forward and the local-gradient rule
    cdef unsigned char _flags   # VISITED | DONE | INT_EXP | HAS_EXTRA | TAPED bits
    cdef unsigned int _slot     # scratch: this node's slot in the Tape being recorded
    # (data..._slot fill 38 bytes after the 16-byte object header: 56 in all with padding,
    # no GC header; no op has both a second operand and an exponent, so they share 8 bytes)

    def __init__(self, data, _children=(), _op='', label=''):
        if type(data) is not float and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        self.data = data          # TypeError for str, None, ... as float() would give
        self.grad = 0.0
        if self._code != LEAF or self._flags & (HAS_EXTRA | INT_EXP):
            _reset(self)          # __init__ called again on a used node: a fresh leaf first
        if _children:
            _children = tuple(_children)
            for child in _children:
                if type(child) is not Value:
                    raise TypeError("_children must be Values, not %s" % type(child).__name__)
            self._code = CUSTOM
            _set_extra(self, 2, _children)
        if _op:
            _set_extra(self, 1, str(_op))
        if label != '':
            self.label = label

    # -- arithmetic (same graph shapes as upstream: a - b is a + (b * -1), ...) --------
    def __add__(self, other):
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(ADD, self, o)

    def __radd__(self, other):              # other + self
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(ADD, self, o)

    def __mul__(self, other):
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(MUL, self, o)

    def __rmul__(self, other):              # other * self
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(MUL, self, o)

    def __pow__(self, other, modulo):
        if modulo is not None:
            return NotImplemented
        if type(other) is Value:
            return _binary(POW, self, other)
        if not _is_number(other):
            return NotImplemented
        return _powc(self, other)

    def __rpow__(self, other, modulo):      # other ** self
        if modulo is not None:
            return NotImplemented
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(POW, o, self)

    def __neg__(self):                      # -self
        return _neg(self)

    def __sub__(self, other):               # self - other
        if type(other) is Value:
            return _binary(ADD, self, _neg(<Value>other))
        if not _is_number(other):
            return NotImplemented
        return _binary(ADD, self, _leaf(-_as_double(other)))

    def __rsub__(self, other):              # other - self
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(ADD, o, _neg(self))

    def __truediv__(self, other):           # self * other**-1
        if type(other) is Value:
            return _binary(MUL, self, _powc(other, -1))
        if not _is_number(other):
            return NotImplemented
        return _binary(MUL, self, _leaf(_pow(_as_double(other), -1.0)))

    def __rtruediv__(self, other):          # other * self**-1
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(MUL, _powc(self, -1), o)

    def relu(self):
        return _unary(RELU, self)

    def tanh(self):
        return _unary(TANH, self)

    def exp(self):
        return _unary(EXP, self)

    def log(self):
        return _unary(LOG, self)

    def sigmoid(self):
        return _unary(SIGMOID, self)

    # -- gradients --------------------------------------------------------------------
    def backward(self):
        """Set self.grad to 1 and accumulate d(self)/d(v) into every v below it."""
        _sync_tapes()
        _begin_walk()
        try:
            _record(self, &_order, True, False)
            self.grad = 1.0
            _accumulate(_order.items, _order.n)
        finally:
            _end_walk()

    def _backward(self):
        """Apply this node's local-gradient rule once (as upstream's closure does)."""
        _sync_tapes()
        if _can_raise(self._code):
            _check_partials(self._code, self._a.data, _y(self))
        _chain(self)

    # -- what upstream exposes as attributes --------------------------------------------
    @property
    def _prev(self):
        if self._flags & TAPED:
            _observe()
        if self._code == CUSTOM:
            return set(_get_extra(self, 2))
        if self._a is None:
            return set()
        if _b(self) == NULL:
            return {self._a}
        return {self._a, <Value>_b(self)}

    @property
    def _op(self):
        name = _get_extra(self, 1)
        if name is not None:
            return name
        if self._code == POWC:
            return '**%r' % (int(self._second.c) if self._flags & INT_EXP else self._second.c)
        return _OP_NAMES[self._code]

    @property
    def label(self):
        label = _get_extra(self, 0)
        return '' if label is None else label

    @label.setter
    def label(self, label):
        if type(label) is not str:
            raise TypeError("label must be a str, not %s" % type(label).__name__)
        _set_extra(self, 0, label)

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def __reduce__(self):
        if self._flags & TAPED:
            _observe()
        extra = tuple(_extras[id(self)]) if self._flags & HAS_EXTRA else None
        return (_rebuild, (self.data, self.grad, self._code, self._a, _b_or_none(self),
                           self._second.c if self._code == POWC else 0.0,
                           self._flags & INT_EXP, extra))


# Install the allocator pair above (and tell CPython the type changed).
_node_size = (<_TypeSlots*>Value).tp_basicsize
_per_chunk = (CHUNK - CHUNK_HEADER) // _node_size
(<_TypeSlots*>Value).tp_alloc = _value_alloc
(<_TypeSlots*>Value).tp_dealloc = _value_dealloc
PyType_Modified(Value)


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__)."""
    cdef Value v = _node(data, op, a, b, c)
    v.grad = grad
    v._flags = int_exp
    if extra is not None:
        _extras[id(v)] = list(extra)
        v._flags |= HAS_EXTRA
    return v


# ---------------------------------------------------------------------------------
# Building nodes. Value.__new__ skips __init__; the chunk allocator makes it cheap.
# ---------------------------------------------------------------------------------
cdef inline Value _node(double data, int op, Value a, Value b, double c):
    cdef Value v = Value.__new__(Value)     # zeroed: _second.b is NULL
    v.data = data
    v._code = op
    v._a = a
    if op == POWC:
        v._second.c = c
    elif b is not None:
        Py_INCREF(b)                        # released by _value_dealloc
        v._second.b = <PyObject*>b
    return v


cdef inline PyObject* _b(Value v) noexcept:
    """v's second operand (borrowed), or NULL: leaves, unary ops and POWC have none."""
    return NULL if v._code == POWC else v._second.b


cdef int _reset(Value v) except -1:
    """Make v a fresh leaf again, keeping only its data (and TAPED: a live tape has it)."""
    cdef PyObject* b = _b(v)
    v._code = LEAF
    v._second.b = NULL          # also clears POWC's exponent, which must not be read as a pointer
    v._flags &= TAPED
    if b != NULL:
        _decref(b)
    v._a = None
    _extras.pop(id(v), None)
    return 0


cdef inline Value _b_or_none(Value v):
    return None if _b(v) == NULL else <Value>_b(v)


cdef inline Value _leaf(double data):
    return _node(data, LEAF, None, None, 0.0)


cdef inline Value _binary(int op, Value a, Value b):
    return _node(_forward(op, a.data, b.data), op, a, b, 0.0)


cdef inline Value _unary(int op, Value a):
    return _node(_forward(op, a.data, 0.0), op, a, None, 0.0)


cdef inline Value _neg(Value a):
    """-a, built as upstream builds it: a * -1."""
    return _binary(MUL, a, _leaf(-1.0))


cdef Value _powc(Value a, object exponent):
    cdef double c = _as_double(exponent)
    cdef Value v = _node(_forward(POWC, a.data, c), POWC, a, None, c)
    if isinstance(exponent, int):
        v._flags = INT_EXP
    return v


cdef inline bint _is_number(object x):
    """Is x a real scalar? int, float, bool, numpy scalars, Fraction, Decimal; not str,
    complex or an array (an array operand is left to numpy, as float * array is)."""
    if type(x) is float or type(x) is int:
        return True
    return isinstance(x, _numbers.Real) or (isinstance(x, _numbers.Number) and not isinstance(x, _numbers.Complex))


cdef inline double _as_double(object x) except? -1.0:
    return x        # Cython: PyFloat_AsDouble, OverflowError for ints beyond float range


cdef inline Value _operand(object other):
    """other as a Value operand (a new constant leaf for a number), None if not a number."""
    if type(other) is Value:
        return <Value>other
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))


cdef object _get_extra(Value v, int field):
    if not v._flags & HAS_EXTRA:
        return None
    return _extras[id(v)][field]


cdef void _set_extra(Value v, int field, object item) except *:
    if not v._flags & HAS_EXTRA:
        _extras[id(v)] = [None, None, None]
        v._flags |= HAS_EXTRA
    _extras[id(v)][field] = item


# ---------------------------------------------------------------------------------
# The topological order ("tape"): an explicit stack and per-node marks replace
# upstream's recursive build_topo and its visited set.
# ---------------------------------------------------------------------------------
cdef struct _Buf:
    # A growable C array of node pointers.
    PyObject** items    # borrowed pointers, unless the owner (a Tape) increfs them
    Py_ssize_t n        # number of items in use (_record counts _stack's in a local)
    Py_ssize_t cap      # allocated length of items

# Scratch arrays for the walk and for Value.backward's order, kept between calls:
# freeing and re-allocating them each call page-faults megabytes in again.
cdef _Buf _stack = _Buf(NULL, 0, 0)
cdef _Buf _order = _Buf(NULL, 0, 0)


cdef bint _walking = False      # a walk's marks, _order and _stack are in use


cdef int _begin_walk() except -1:
    """Claim the marks and scratch arrays for one walk (released by the caller).

    Python code can run in the middle of a walk only through the garbage collector
    (a finalizer or gc callback, while an error is raised); a backward() or Tape() from
    there would clobber the outer walk's arrays and marks, so it raises instead."""
    global _walking
    if _walking:
        raise RuntimeError("backward() or Tape() called while another one is walking a graph "
                           "(from a finalizer or a gc callback?)")
    _walking = True
    return 0


cdef inline void _end_walk() noexcept:
    global _walking
    _walking = False


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


cdef inline void _set_field(Value v, bint data, double x) noexcept:
    if data:
        v.data = x
    else:
        v.grad = x


cdef inline void _add_grad(Value v, double g) noexcept:
    v.grad += g             # borrowed too: `(<Value>p).grad += g` would incref


cdef inline bint _wanted(PyObject* child, bint leaves) noexcept:
    """Should the walk enter child? Not twice, and not a leaf unless leaves are wanted."""
    return not (<Value>child)._flags & VISITED and (leaves or (<Value>child)._code != LEAF)


cdef int _record(Value root, _Buf* order, bint check, bint leaves) except -1:
    """Fill order with every node below root, each after all its operands (post-order DFS).

    With check, also raise (before anything is changed) what backward would raise.
    Without leaves, leaves below root are neither recorded nor marked: they have no
    rule for backward to apply (a wide sum's leaves would double the walk).
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
    order.n = 0
    try:
        if cap < 3:
            _grow(&_stack)
            stack, cap = _stack.items, _stack.cap
        stack[0] = <PyObject*>root
        n = 1
        while n:
            p = stack[n - 1]
            if not (<Value>p)._flags & VISITED:
                # first visit: push the operands; p stays below them on the stack
                _set_flags(<Value>p, VISITED)
                if (<Value>p)._code == CUSTOM:
                    for c in _get_extra(<Value>p, 2):
                        if _wanted(<PyObject*>c, leaves):
                            if n + 2 > cap:
                                _grow(&_stack)
                                stack, cap = _stack.items, _stack.cap
                            stack[n] = <PyObject*>c
                            n += 1
                    continue
                if n + 2 > cap:             # room for both operands
                    _grow(&_stack)
                    stack, cap = _stack.items, _stack.cap
                child = _b(<Value>p)
                if child != NULL and _wanted(child, leaves):
                    stack[n] = child
                    n += 1
                child = <PyObject*>(<Value>p)._a
                if child != <PyObject*>None and _wanted(child, leaves):
                    stack[n] = child
                    n += 1
            else:
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
                    if check and _can_raise((<Value>p)._code):
                        _check_partials((<Value>p)._code, (<Value>p)._a.data, _y(<Value>p))
    except BaseException:
        _unmark(out, n_out)
        _unmark(stack, n)
        if emitting != NULL:
            _unmark(&emitting, 1)
        raise
    order.n = n_out
    return 0


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


cdef void _accumulate(PyObject** nodes, Py_ssize_t n) noexcept:
    """Apply every local rule, root first (reversed topological order); clear the marks."""
    cdef Py_ssize_t i
    cdef PyObject* p
    for i in range(n - 1, -1, -1):
        if i >= 8:
            __builtin_prefetch(nodes[i - 8])    # large graphs: hide the cache miss
        p = nodes[i]
        _clear_flags(<Value>p, VISITED | DONE)
        _chain(<Value>p)


# ---------------------------------------------------------------------------------
# Tape: record a graph once, then replay forward and backward over dense C arrays.
#
# Recording numbers every node with a slot: leaves first, then op nodes in
# topological order (those fused into an FMA last), then constants (0.0 for unary
# ops' y, POWC exponents). Instruction k writes slot n_leaves + k from slots code[k].x
# and code[k].y (and .z). Replay touches only the arrays, not the Values of the op
# nodes; values are copied back into the Values a user still holds
# (the root, a list of scores...). The other op nodes can only be reached through
# _prev, pickling, Tape.nodes or an eager backward(): those first sync every stale
# tape into its nodes, and after _prev/pickling/Tape.nodes every replay writes all
# of its nodes back (the user may now hold any of them).
# ---------------------------------------------------------------------------------
ctypedef struct Instr:           # one instruction, 16 bytes: a replay reads one stream
    int op                       # op code (FMA included)
    int x                        # first operand's slot (FMA: acc)
    int y                        # second operand's slot, or a constant's (FMA: a)
    int z                        # FMA: b's slot; unused by the other ops


cdef Py_ssize_t _n_stale = 0     # live tapes whose nodes lag behind their arrays
cdef bint _observed = False      # internals of a live tape were reached: write all back
_live_tapes = weakref.WeakSet()


cdef void _sync_tapes(Tape keep=None) except *:
    """Copy every stale tape's arrays (but keep's) into its nodes, before Python or
    another tape reads them. Replays sync the others first, so at most one tape is
    stale and a node shared by two tapes ends up with the latest replay's values."""
    if _n_stale:
        for tape in list(_live_tapes):
            if tape is not keep:
                (<Tape>tape)._sync()


cdef void _observe() except *:
    """A tape's inner nodes become reachable from Python: keep them all up to date."""
    global _observed
    _sync_tapes()
    _observed = True


cdef void* _alloc(Py_ssize_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n > 0 else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


@cython.final
cdef class Tape:
    """The graph below a root, recorded in topological order for replay.

    forward() recomputes every node from the leaves' current data and returns the
    root's; backward() gives the gradients root.backward() would give on a freshly
    built graph. Python control flow is frozen at record time; data-dependent ops
    (relu's branch, ...) are re-evaluated on every replay.
    """
    cdef PyObject** _nodes      # owned: the Value recorded in slot s (s < n_leaves + n_ops)
    cdef Py_ssize_t n_leaves    # slots [0, n_leaves): leaves, read by every forward()
    cdef Py_ssize_t n_ops       # op nodes, in slots [n_leaves, n_leaves + n_ops):
    cdef Py_ssize_t n_code      # first the n_code run by instructions, children first,
                                # then the MULs fused into an FMA (computed only when read)
    cdef Py_ssize_t n_slots     # all slots, constants included
    cdef Py_ssize_t root_slot   # the root's slot
    cdef Instr* code            # instruction k writes slot n_leaves + k
    cdef int* fused_in          # per fused MUL (slot n_leaves + n_code + j): its FMA's k
    cdef double* val            # data of every slot (the last complete forward())
    cdef double* spare          # forward() computes here, then swaps with val: a replay
                                # that raises leaves val, and so the graph, as it was
    cdef double* grd            # grad of every slot
    cdef int* by_use            # leaf slots: the n_shared used more than once (or never:
    cdef Py_ssize_t n_shared    # a lone root), then those used once, whose grads backward()
                                # adds to without reading them first (see there)
    cdef int* held              # op slots whose Values the user holds: written back always
    cdef Py_ssize_t n_held
    cdef unsigned char* is_held # per slot: 1 if in held (sync leaves those alone: they are
                                # current, and the user may have changed them since)
    cdef int* checked           # instructions whose partials can raise (POWC, POW, LOG)
    cdef Py_ssize_t n_checked
    cdef bint stale_data        # op nodes' Value.data lag behind val
    cdef bint stale_grad        # op nodes' Value.grad lag behind grd
    cdef Value _root
    cdef object __weakref__     # for _live_tapes

    def __init__(self, Value root not None):
        cdef Py_ssize_t n
        cdef int* refs = NULL
        cdef unsigned char* mark = NULL
        if self.code != NULL:           # allocated first: set by any earlier attempt
            raise RuntimeError("Tape is already initialised")
        _sync_tapes()                   # the nodes' data seed the arrays
        _begin_walk()                   # the marks, _order and the nodes' _slot are in use
        try:
            _record(root, &_order, False, True)
            _unmark(_order.items, _order.n)
            n = _order.n
            if n >= 2**31 - 2 - n:
                raise OverflowError("graph too large for a Tape (slots are C ints)")
            refs = <int*>_alloc(n, sizeof(int))
            mark = <unsigned char*>_alloc(n, sizeof(unsigned char))
            self._plan(root, n, refs, mark)
            self._place(n, refs, mark)
            self._compile(n)
            self.root_slot = root._slot
        finally:
            _end_walk()
            free(refs)
            free(mark)
        memcpy(self.spare, self.val, self.n_slots * sizeof(double))    # constants in both
        self._root = root
        _live_tapes.add(self)

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
        # mark[i]: 1 if the user holds op node i (it has more references than its
        # consumers account for; the root always counts), 2 if it is a MUL that gets
        # fused into the ADD right after it, which is its only consumer.
        for i in range(n):
            p = _order.items[i]
            if (<Value>p)._a is None:   # LEAF, or CUSTOM (its data is taken as given)
                n_leaves += 1
                n_shared += refs[i] != 1
                continue
            if Py_REFCNT(p) > refs[i] or p == <PyObject*>root:
                mark[i] = 1
            if (<Value>p)._code == POWC:
                n_powc += 1
            elif ((<Value>p)._code == ADD and prev != NULL and (<Value>prev)._code == MUL
                    and refs[(<Value>prev)._slot] == 1 and not mark[(<Value>prev)._slot]
                    and (<PyObject*>(<Value>p)._a == prev or _b(<Value>p) == prev)):
                mark[(<Value>prev)._slot] = 2
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
            elif mark[i] == 2:
                s = self.n_leaves + self.n_code + fused
                fused += 1
            else:
                s = self.n_leaves + code
                code += 1
            if mark[i] == 1:
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

    cdef void _untag(self) noexcept:
        """Clear TAPED on this tape's op nodes, keeping it where another tape has them."""
        global _observed
        cdef Py_ssize_t s
        cdef PyObject* p
        for s in range(self.n_leaves, self.n_leaves + self.n_ops):
            p = self._nodes[s]
            _clear_flags(<Value>p, TAPED)
        if _live_tapes is None:         # interpreter shutdown: module globals are gone
            return
        for tape in _live_tapes:
            if tape is not self:
                (<Tape>tape)._tag()
        if not len(_live_tapes):
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

    cdef void _fill_fused(self) noexcept:
        """The fused MULs' data and grads, which replay skips, for writing back."""
        cdef Py_ssize_t j, k, f = self.n_leaves + self.n_code
        for j in range(self.n_ops - self.n_code):
            k = self.fused_in[j]
            self.val[f + j] = self.val[self.code[k].y] * self.val[self.code[k].z]
            self.grd[f + j] = self.grd[self.n_leaves + k]  # the ADD's grad, passed on

    cdef void _write_back(self, bint data) noexcept:
        """After a replay, copy the op slots' data (or grads) into the Values: all of them
        once the tape's insides were observed, else only the held ones (the rest lag
        behind until _sync)."""
        cdef Py_ssize_t k, s
        cdef PyObject* p
        cdef double* src = self.val if data else self.grd
        if _observed:
            self._fill_fused()
            for s in range(self.n_leaves, self.n_leaves + self.n_ops):
                p = self._nodes[s]
                _set_field(<Value>p, data, src[s])
        else:
            for k in range(self.n_held):
                s = self.held[k]
                p = self._nodes[s]
                _set_field(<Value>p, data, src[s])
            self._mark_stale(data)

    cdef void _mark_stale(self, bint data) noexcept:
        global _n_stale
        if not (self.stale_data or self.stale_grad):
            _n_stale += 1
        if data:
            self.stale_data = True
        else:
            self.stale_grad = True

    def forward(self):
        """Recompute every node from the leaves' current data; return the root's data."""
        cdef Py_ssize_t s, k, base = self.n_leaves
        # locals, not self.code: a store to val[] could alias self's fields for the compiler
        cdef double* val = self.spare
        cdef Instr* code = self.code
        cdef Instr c
        cdef double a, out
        _sync_tapes(self)
        for s in range(base):
            val[s] = (<Value>self._nodes[s]).data
        out = val[base - 1] if base else 0.0   # "the slot before": the last leaf, for k = 0
        for k in range(self.n_code):
            # a neuron's sum is a chain of FMAs, each adding to the one before: take
            # that operand from a register, not back through memory (a store-to-load
            # round trip on the chain's critical path)
            c = code[k]
            a = out if c.x == base + k - 1 else val[c.x]
            if c.op == FMA:
                out = a + val[c.y] * val[c.z]
            else:
                out = _forward(c.op, a, val[c.y])
            val[base + k] = out
        self.spare = self.val           # complete: the new values become current
        self.val = val
        self._write_back(True)
        return val[self.root_slot]

    def backward(self):
        """Gradients of the root, as root.backward() on a freshly built graph: op nodes'
        grads restart from 0, the root's is 1, leaves' grads accumulate."""
        cdef Py_ssize_t s, j, k, base = self.n_leaves
        cdef double* val = self.val
        cdef double* grd = self.grd
        cdef Instr* code = self.code
        cdef Instr c
        cdef double g, dx, dy
        cdef PyObject* p
        _sync_tapes(self)
        for s in range(self.n_checked):         # raise before any grad changes
            k = self.checked[s]
            c = code[k]
            _check_partials(c.op, val[c.x], val[c.y])
        # Leaves accumulate: old grad + c1 + c2 + ... in eager's order. A leaf used once
        # gets one c: it starts from -0.0 (for which -0.0 + c is c, bit for bit) and
        # is added to its Value at the end, so its Value is visited once, not twice.
        for j in range(self.n_shared):
            s = self.by_use[j]
            grd[s] = (<Value>self._nodes[s]).grad
        for j in range(self.n_shared, base):
            grd[self.by_use[j]] = -0.0
        # op nodes' grads restart from 0 (the fused MULs' are filled in when read)
        memset(grd + base, 0, self.n_code * sizeof(double))
        memset(grd + base + self.n_ops, 0, (self.n_slots - base - self.n_ops) * sizeof(double))
        grd[self.root_slot] = 1.0
        for k in range(self.n_code - 1, -1, -1):
            g = grd[base + k]
            c = code[k]
            if c.op == FMA:
                grd[c.x] += g                   # the ADD passes g to acc and to the MUL
                grd[c.y] += val[c.z] * g
                grd[c.z] += val[c.y] * g
            else:
                _partials(c.op, val[c.x], val[c.y], val[base + k], &dx, &dy)
                grd[c.x] += dx * g
                grd[c.y] += dy * g              # unary ops: lands in a constant's slot
        for j in range(self.n_shared):
            s = self.by_use[j]
            (<Value>self._nodes[s]).grad = grd[s]
        for j in range(self.n_shared, base):
            s = self.by_use[j]
            p = self._nodes[s]
            _add_grad(<Value>p, grd[s])
        self._write_back(False)

    def __len__(self):
        return self.n_leaves + self.n_ops

    @property
    def root(self):
        return self._root

    @property
    def leaves(self):
        """The recorded nodes without a rule (parameters, inputs, constants), in order."""
        return [<Value>self._nodes[s] for s in range(self.n_leaves)]

    @property
    def nodes(self):
        """Every recorded node, leaves first, then op nodes in topological order."""
        cdef Py_ssize_t j, k, base = self.n_leaves
        _observe()
        nodes = [<Value>self._nodes[s] for s in range(base)]
        j = 0
        for k in range(self.n_code):
            if self.code[k].op == FMA:     # its fused MUL came right before it
                nodes.append(<Value>self._nodes[base + self.n_code + j])
                j += 1
            nodes.append(<Value>self._nodes[base + k])
        return nodes

    @property
    def n_instructions(self):
        """How many instructions a replay runs: one per op node, less the fused MULs."""
        return self.n_code

    def __repr__(self):
        return "Tape(%d nodes, %d leaves, %d instructions)" % (
            len(self), self.n_leaves, self.n_code)

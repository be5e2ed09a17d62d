# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled core of micrograd: a scalar Value node, its op rules, and the tape.

Read this file next to ``micrograd/_pure.py``, its pure-Python twin: the same op
codes, the same rules in the same order, the same iterative topological walk.

Where upstream micrograd gives every node a Python ``set`` of children and a
``_backward`` closure, here a node is a 64-byte C struct: two child pointers, an op
code and one constant. The op code selects both the forward rule (``_forward``) and
the local-gradient rule (``_local_grads``); the two are written side by side below.
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.math cimport pow, exp, log, tanh, floor, isfinite, isinf
from libc.stdlib cimport realloc, free

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject* o)

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

# Bits of Value._flags.
cdef enum:
    VISITED = 1      # entered by the current topological walk (cleared when it ends)
    DONE = 2         # appended to the current walk's tape (cleared when it ends)
    INT_EXP = 4      # POWC's exponent was an int: _op shows '**2', not '**2.0'
    HAS_EXTRA = 8    # this node has an entry in _extras (label, hand-built _op/_children)

# Rare per-node data lives here, keyed by id(node), so that the common node stays 64
# bytes: {id: [label, op string or None, children tuple or None]}. Only str labels are
# stored, and children are always older nodes, so no reference cycle can pass through it.
cdef dict _extras = {}

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid'}


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
# The rule book: forward rule and local-gradient rule of every op, side by side.
# ---------------------------------------------------------------------------------
cdef inline double _forward(int op, double a, double b, double c) except? -1.0:
    """out.data from the operands' data (b: second operand, c: constant exponent)."""
    if op == ADD:
        return a + b
    elif op == MUL:
        return a * b
    elif op == POWC:
        return _pow(a, c)
    elif op == POW:
        return _pow(a, b)
    elif op == RELU:
        return 0.0 if a < 0.0 else a
    elif op == TANH:
        return tanh(a)
    elif op == EXP:
        return _exp(a)
    elif op == LOG:
        return _log(a)
    elif op == SIGMOID:
        return _sigmoid(a)
    raise AssertionError("no forward rule for op %d" % op)


cdef inline void _local_grads(Value out) noexcept:
    """Chain rule for one node: add out.grad * d(out)/d(operand) to each operand's grad.

    Never raises: the cases where Python would (0 ** negative, log of 0) are caught
    beforehand by _check_local_grads, so that a failing backward() changes nothing.
    """
    # Operands are read in place as out._a / out._b: a typed local would cost an
    # incref/decref pair per node.
    cdef int op = out._code
    cdef double t
    if op == ADD:
        out._a.grad += out.grad
        out._b.grad += out.grad
    elif op == MUL:
        out._a.grad += out._b.data * out.grad
        out._b.grad += out._a.data * out.grad
    elif op == POWC:
        out._a.grad += (out._c * pow(out._a.data, out._c - 1.0)) * out.grad
    elif op == POW:
        out._a.grad += (out._b.data * pow(out._a.data, out._b.data - 1.0)) * out.grad
        if out._a.data != 0.0:   # 0 ** b is flat in b (for b > 0): no exponent gradient
            out._b.grad += (out.data * log(out._a.data)) * out.grad
    elif op == RELU:
        out._a.grad += (out.data > 0.0) * out.grad
    elif op == TANH:
        t = out.data
        out._a.grad += (1.0 - t * t) * out.grad
    elif op == EXP:
        out._a.grad += out.data * out.grad
    elif op == LOG:
        out._a.grad += out.grad / out._a.data
    elif op == SIGMOID:
        t = out.data
        out._a.grad += t * (1.0 - t) * out.grad
    # LEAF and CUSTOM have no rule (upstream: `_backward = lambda: None`)


cdef int _check_local_grads(Value out) except -1:
    """Raise what Python would raise while applying out's local rule (rules read the
    operands' current data, which users may have changed since the forward pass)."""
    cdef int op = out._code
    cdef double a
    if op == POWC:
        _pow(out._a.data, out._c - 1.0)
    elif op == POW:
        a = out._a.data
        _pow(a, out._b.data - 1.0)
        if a < 0.0:
            raise ValueError("math domain error: the exponent's gradient needs "
                             "log(base), and the base %r is negative" % a)
    elif op == LOG and out._a.data == 0.0:
        raise ZeroDivisionError("float division by zero")
    return 0


# ---------------------------------------------------------------------------------
# Freeing: a deep chain must not free itself by C recursion (tp_dealloc calling
# tp_dealloc a million times overflows the C stack). A node being freed hands the
# children it solely owns to this stack; the outermost dealloc drains it in a loop.
# ---------------------------------------------------------------------------------
cdef PyObject** _pending = NULL
cdef Py_ssize_t _n_pending = 0
cdef Py_ssize_t _cap_pending = 0
cdef bint _draining = False


cdef inline void _defer_free(PyObject* child) noexcept:
    # child is passed as a raw pointer: a Value argument would be increfed for the call
    global _pending, _cap_pending, _n_pending
    cdef PyObject** grown
    if child == <PyObject*>None or Py_REFCNT(child) > 1:
        return      # someone else keeps it alive: dropping our reference frees nothing
    if _n_pending == _cap_pending:
        grown = <PyObject**>realloc(_pending, (2 * _cap_pending + 1024) * sizeof(PyObject*))
        if grown == NULL:
            return  # out of memory: fall back to ordinary (recursive) freeing
        _pending = grown
        _cap_pending = 2 * _cap_pending + 1024
    Py_INCREF(<object>child)
    _pending[_n_pending] = child
    _n_pending += 1


# ---------------------------------------------------------------------------------
# The node.
# ---------------------------------------------------------------------------------
@cython.final        # no subclasses: attribute access and calls bind statically
@cython.no_gc        # children are always older nodes, so no cycle can exist: skip the GC
@cython.freelist(1024)   # reuse freed nodes' memory: a training loop frees and rebuilds each step
cdef class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""
    cdef public double data     # forward value (always a C double)
    cdef public double grad     # d(root)/d(self), accumulated by backward()
    cdef Value _a               # first operand, None for a leaf
    cdef Value _b               # second operand, None for unary ops and POWC
    cdef double _c              # POWC's exponent; unused by other ops
    cdef unsigned char _code    # op code: selects the forward and the local-gradient rule
    cdef unsigned char _flags   # VISITED | DONE | INT_EXP | HAS_EXTRA bits

    def __init__(self, data, _children=(), _op='', label=''):
        self.data = data          # TypeError for str, None, ... as float() would give
        if _children:
            self._code = CUSTOM
            _set_extra(self, 2, tuple(_children))
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
        return _binary(MUL, self, _leaf(-1.0))

    def __sub__(self, other):               # self - other
        if type(other) is Value:
            return _binary(ADD, self, -other)
        if not _is_number(other):
            return NotImplemented
        return _binary(ADD, self, _leaf(-_as_double(other)))

    def __rsub__(self, other):              # other - self
        o = _operand(other)
        if o is None:
            return NotImplemented
        return _binary(ADD, o, -self)

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
        _record(self, &_order, True)
        self.grad = 1.0
        _accumulate(_order.items, _order.n)

    def _backward(self):
        """Apply this node's local-gradient rule once (as upstream's closure does)."""
        _check_local_grads(self)
        _local_grads(self)

    # -- what upstream exposes as attributes --------------------------------------------
    @property
    def _prev(self):
        if self._code == CUSTOM:
            return set(_get_extra(self, 2))
        if self._a is None:
            return set()
        if self._b is None:
            return {self._a}
        return {self._a, self._b}

    @property
    def _op(self):
        name = _get_extra(self, 1)
        if name is not None:
            return name
        if self._code == POWC:
            return '**%r' % (int(self._c) if self._flags & INT_EXP else self._c)
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
        extra = tuple(_extras[id(self)]) if self._flags & HAS_EXTRA else None
        return (_rebuild, (self.data, self.grad, self._code, self._a, self._b, self._c,
                           self._flags & INT_EXP, extra))

    def __dealloc__(self):
        global _draining, _n_pending
        cdef PyObject* p
        if self._flags & HAS_EXTRA:
            _extras.pop(id(self), None)
        _defer_free(<PyObject*>self._a)
        _defer_free(<PyObject*>self._b)
        self._a = None          # the deferred children now live on in _pending only
        self._b = None
        if _draining:
            return              # an outer dealloc is draining _pending
        _draining = True
        while _n_pending:
            _n_pending -= 1
            p = _pending[_n_pending]
            Py_DECREF(<object>p)     # may free p, whose dealloc pushes its children
        _draining = False


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
# Building nodes. Value.__new__ skips __init__; the freelist makes it cheap.
# ---------------------------------------------------------------------------------
cdef inline Value _node(double data, int op, Value a, Value b, double c):
    cdef Value v = Value.__new__(Value)
    v.data = data
    v._code = op
    v._a = a
    v._b = b
    v._c = c
    return v


cdef inline Value _leaf(double data):
    return _node(data, LEAF, None, None, 0.0)


cdef inline Value _binary(int op, Value a, Value b):
    return _node(_forward(op, a.data, b.data, 0.0), op, a, b, 0.0)


cdef inline Value _unary(int op, Value a):
    return _node(_forward(op, a.data, 0.0, 0.0), op, a, None, 0.0)


cdef inline double _data_or_zero(Value v) noexcept:
    return v.data if v is not None else 0.0


cdef Value _powc(Value a, object exponent):
    cdef double c = _as_double(exponent)
    cdef Value v = _node(_forward(POWC, a.data, 0.0, c), POWC, a, None, c)
    if isinstance(exponent, int):
        v._flags = INT_EXP
    return v


cdef inline bint _is_number(object x):
    """Can float() take x without parsing a string? (int, float, bool, numpy scalars, ...)"""
    if type(x) is float or type(x) is int:
        return True
    return not isinstance(x, (str, bytes, bytearray)) and (
        hasattr(x, '__float__') or hasattr(x, '__index__'))


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
    Py_ssize_t n        # number of items in use
    Py_ssize_t cap      # allocated length of items

# Scratch arrays for the walk and for Value.backward's order, kept between calls:
# freeing and re-allocating them each call page-faults megabytes in again.
cdef _Buf _stack = _Buf(NULL, 0, 0)
cdef _Buf _order = _Buf(NULL, 0, 0)


cdef inline int _push(_Buf* buf, PyObject* v) except -1:
    cdef PyObject** grown
    if buf.n == buf.cap:
        grown = <PyObject**>realloc(buf.items, (2 * buf.cap + 1024) * sizeof(PyObject*))
        if grown == NULL:
            raise MemoryError()
        buf.items = grown
        buf.cap = 2 * buf.cap + 1024
    buf.items[buf.n] = v
    buf.n += 1
    return 0


cdef inline bint _can_raise(int op) noexcept:
    """Ops whose local-gradient rule can raise (see _check_local_grads)."""
    return op == POWC or op == POW or op == LOG


cdef int _record(Value root, _Buf* order, bint check) except -1:
    """Fill order with every node below root, each after all its operands (post-order DFS).

    With check, also raise (before anything is changed) what backward would raise.
    On success the recorded nodes stay marked: the caller clears the marks with
    _accumulate or _unmark. On error they are cleared here.
    """
    # Pointers here are borrowed (root keeps the graph alive): no refcounting per node.
    cdef _Buf* stack = &_stack
    cdef PyObject* p
    cdef PyObject* child
    order.n = 0
    stack.n = 0
    try:
        _push(stack, <PyObject*>root)
        while stack.n:
            p = stack.items[stack.n - 1]
            if not (<Value>p)._flags & VISITED:
                # first visit: push the operands; p stays below them on the stack
                (<Value>p)._flags |= VISITED
                if (<Value>p)._code == CUSTOM:
                    for c in _get_extra(<Value>p, 2):
                        if not (<Value>c)._flags & VISITED:
                            _push(stack, <PyObject*>c)
                    continue
                child = <PyObject*>(<Value>p)._b
                if child != <PyObject*>None and not (<Value>child)._flags & VISITED:
                    _push(stack, child)
                child = <PyObject*>(<Value>p)._a
                if child != <PyObject*>None and not (<Value>child)._flags & VISITED:
                    _push(stack, child)
            else:
                # operands done (or a stale duplicate entry): emit p once
                stack.n -= 1
                if not (<Value>p)._flags & DONE:
                    (<Value>p)._flags |= DONE
                    _push(order, p)
                    if check and _can_raise((<Value>p)._code):
                        _check_local_grads(<Value>p)
    except BaseException:
        _unmark(order.items, order.n)
        _unmark(stack.items, stack.n)
        raise
    return 0


cdef void _unmark(PyObject** nodes, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        (<Value>nodes[i])._flags &= ~(VISITED | DONE)


cdef extern from *:
    void __builtin_prefetch(const void* addr) nogil   # GCC/Clang: start loading a cache line


cdef void _accumulate(PyObject** nodes, Py_ssize_t n) noexcept:
    """Apply every local rule, root first (reversed topological order); clear the marks."""
    cdef Py_ssize_t i
    cdef PyObject* p
    for i in range(n - 1, -1, -1):
        if i >= 8:
            __builtin_prefetch(nodes[i - 8])    # large graphs: hide the cache miss
        p = nodes[i]
        (<Value>p)._flags &= ~(VISITED | DONE)
        _local_grads(<Value>p)


# ---------------------------------------------------------------------------------
# Tape: record a graph once, then replay forward and backward in C.
# ---------------------------------------------------------------------------------
@cython.final
cdef class Tape:
    """The graph below a root, recorded in topological order for replay.

    forward() recomputes every node from the leaves' current data; backward() gives
    the gradients loss.backward() would give on a freshly built graph.
    """
    cdef _Buf order          # owned references to every recorded node, children first
    cdef _Buf checked        # the recorded nodes whose rules can raise (POWC, POW, LOG)
    cdef Value _root         # the recorded root (the loss)

    def __init__(self, Value root not None):
        cdef Py_ssize_t i
        cdef PyObject* p
        if self._root is not None:
            raise RuntimeError("Tape is already initialised")
        _record(root, &_order, False)
        _unmark(_order.items, _order.n)
        for i in range(_order.n):       # copy the scratch order, owning each node
            p = _order.items[i]
            Py_INCREF(<object>p)
            _push(&self.order, p)
            if _can_raise((<Value>p)._code):
                _push(&self.checked, p)
        self._root = root

    def __dealloc__(self):
        cdef Py_ssize_t i
        # root first: each node's operands are still held here, so nothing recurses
        for i in range(self.order.n - 1, -1, -1):
            Py_DECREF(<object>self.order.items[i])
        free(self.order.items)
        free(self.checked.items)

    def __len__(self):
        return self.order.n

    @property
    def root(self):
        return self._root

    @property
    def leaves(self):
        """The recorded nodes without a rule (parameters, inputs, constants), in order."""
        return [v for v in self.nodes if v._code == LEAF or v._code == CUSTOM]

    @property
    def nodes(self):
        """Every recorded node, in topological order (operands before their results)."""
        return [<Value>self.order.items[i] for i in range(self.order.n)]

    def forward(self):
        """Recompute every node from the leaves' current data; return the root's data."""
        cdef Py_ssize_t i
        cdef PyObject* p
        for i in range(self.order.n):
            p = self.order.items[i]
            if (<Value>p)._code != LEAF and (<Value>p)._code != CUSTOM:
                (<Value>p).data = _forward((<Value>p)._code, (<Value>p)._a.data,
                                           _data_or_zero((<Value>p)._b), (<Value>p)._c)
        return self._root.data

    def backward(self):
        """Zero the recorded non-leaf grads, set the root's grad to 1, accumulate."""
        cdef Py_ssize_t i
        cdef PyObject* p
        for i in range(self.checked.n):
            _check_local_grads(<Value>self.checked.items[i])
        for i in range(self.order.n):
            p = self.order.items[i]
            if (<Value>p)._code != LEAF and (<Value>p)._code != CUSTOM:
                (<Value>p).grad = 0.0
        self._root.grad = 1.0
        _accumulate(self.order.items, self.order.n)

    def __repr__(self):
        return "Tape(%d nodes, %d leaves)" % (len(self), len(self.leaves))

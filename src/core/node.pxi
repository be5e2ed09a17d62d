# The node: the Value class, building nodes, pickling. Twin: micrograd/_pure/node.py.
# Its fields are declared in micrograd/_engine.pxd.

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid', CUSTOM: ''}


@cython.no_gc
cdef class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""

    def __init__(self, data, _children=(), _op='', label=''):
        if type(data) is not float and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        self.data = data          # TypeError for str, None, ... as float() would give
        self.grad = 0.0
        if self._code != LEAF or self._flags & (HAS_EXTRA | INT_EXP):
            if _walking:          # resetting drops children a walk may still point into
                raise RuntimeError("Value.__init__ on an existing node while a graph is "
                                   "being walked (from a _backward, finalizer or gc callback?)")
            _reset(self)          # __init__ called again on a used node: a fresh leaf first
        if _children:
            _children = tuple(_children)
            for child in _children:
                if not isinstance(child, Value):
                    raise TypeError("_children must be Values, not %s" % type(child).__name__)
            self._code = CUSTOM
            _set_extra(self, EXTRA_CHILDREN, _children)
        if _op:
            _set_extra(self, EXTRA_OP, str(_op))
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
        if isinstance(other, Value):
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
        if isinstance(other, Value):
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
        if isinstance(other, Value):
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
        cdef Py_ssize_t n
        _sync_tapes()
        _begin_walk()
        try:
            n = _record(self, &_order, WALK_CHECK)
            self.grad = 1.0
            _accumulate(_order.items, n)
        finally:
            _end_walk()

    @property
    def _backward(self):
        """This node's local-gradient step, called once per node by backward(): the
        function assigned to it, or the built-in rule of its op."""
        if self._flags & USER_RULE:
            return _get_extra(self, EXTRA_RULE)
        return self._rule

    @_backward.setter
    def _backward(self, fn):
        _set_rule(self, fn)

    @_backward.deleter
    def _backward(self):
        _clear_rule(self)

    def _rule(self):
        """Apply the built-in local-gradient rule of this node's op once."""
        _sync_tapes()
        if _can_raise(self._code):
            _check_partials(self._code, self._a.data, _y(self))
        _chain(self)

    # -- attributes the class does not define (core/extras.pxi) ------------------------
    def __setattr__(self, name, value):
        _set_attribute(self, name, value)

    def __delattr__(self, name):
        _del_attribute(self, name)

    # -- what upstream exposes as attributes --------------------------------------------
    @property
    def _prev(self):
        if self._flags & TAPED:
            _observe()
        if self._code == CUSTOM:
            return set(_get_extra(self, EXTRA_CHILDREN))
        if self._a is None:
            return set()
        if _b(self) == NULL:
            return {self._a}
        return {self._a, <Value>_b(self)}

    @_prev.setter
    def _prev(self, children):
        """Upstream's Value sets _prev in __init__: accepted on leaves and hand-built
        nodes (it makes them CUSTOM nodes with these children); an op's are its operands."""
        children = tuple(children)
        if self._code != LEAF and self._code != CUSTOM:
            raise AttributeError("_prev of a %r node is given by its operands" % self._op)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError("_prev must hold Values, not %s" % type(child).__name__)
        if _walking:
            raise RuntimeError("_prev set while a graph is being walked")
        self._code = CUSTOM if children else LEAF
        _set_extra(self, EXTRA_CHILDREN, children if children else None)

    @property
    def _op(self):
        name = _get_extra(self, EXTRA_OP)
        if name is not None:
            return name
        if self._code == POWC:
            return '**%r' % (int(self._second.c) if self._flags & INT_EXP else self._second.c)
        return _OP_NAMES[self._code]

    @_op.setter
    def _op(self, name):
        if type(name) is not str:
            raise TypeError("_op must be a str, not %s" % type(name).__name__)
        _set_extra(self, EXTRA_OP, name)

    @property
    def label(self):
        label = _get_extra(self, EXTRA_LABEL)
        return '' if label is None else label

    @label.setter
    def label(self, label):
        if type(label) is not str:
            raise TypeError("label must be a str, not %s" % type(label).__name__)
        _set_extra(self, EXTRA_LABEL, label)

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def __reduce__(self):
        if self._flags & TAPED:
            _observe()
        extra = tuple(_extras[id(self)]) if self._flags & HAS_EXTRA else None
        return (_rebuild, (self.data, self.grad, self._code, self._a, _b_or_none(self),
                           self._second.c if self._code == POWC else 0.0,
                           self._flags & INT_EXP, extra))


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__)."""
    cdef Value v = _node(data, op, a, b, c)
    v.grad = grad
    v._flags = int_exp
    if extra is not None:
        entry = list(extra) + [None] * (N_EXTRAS - len(extra))
        _extras[id(v)] = entry
        v._flags |= HAS_EXTRA
        if entry[EXTRA_RULE] is not None:
            v._flags |= USER_RULE
    return v


# Building nodes. Value.__new__ skips __init__; the chunk allocator makes it cheap.
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
    if isinstance(other, Value):
        return <Value>other
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))

# The node: the Value class, building nodes, pickling. Twin: micrograd/_pure/node.py.
# Its fields are declared in micrograd/_engine.pxd.

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid', CUSTOM: ''}


@cython.no_gc
cdef class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""

    def __init__(self, data, _children=(), _op='', label=''):
        if not isinstance(data, (float, int)) and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        self.data = data          # TypeError for str, None, ... as float() would give
        self.grad = 0.0
        if _children and self._flags & USED:
            # __init__ again on a node already below others: it may be below its new
            # children too, a cycle through the side table, out of the GC's sight
            _children = tuple(_children)
            _refuse_cycle(self, _children)
        if self._code != LEAF or self._flags & (HAS_EXTRA | INT_EXP):
            if _walking:          # resetting drops children a walk may still point into
                raise RuntimeError("Value.__init__ on an existing node while a graph is "
                                   "being walked (from a _backward, finalizer or gc callback?)")
            _reset(self)          # __init__ called again on a used node: a fresh leaf first
        if _children:
            _children = tuple(_children)
            for child in _children:
                if not isinstance(child, Value):
                    raise _not_a_value("_children", child)
            self._code = CUSTOM
            _mark_used(_children)
            _set_extra(self, EXTRA_CHILDREN, _children)
        if _op != '':
            _set_extra(self, EXTRA_OP, _op_extra(_op))
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
        cdef _Walk* w
        _sync_tapes()
        _begin_walk()
        try:
            w = _recall(self)
            if w != NULL:
                self.grad = 1.0
                _accumulate(w.order, w.n)
            else:
                n = _record(self, &_order, WALK_CHECK)
                self.grad = 1.0
                _accumulate(_order.items, n)
                _remember(self, _order.items, n)
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
        if self._flags & USED:
            _refuse_cycle(self, children)
        _mark_used(children)
        self._code = CUSTOM if children else LEAF
        _set_extra(self, EXTRA_CHILDREN, children if children else None)

    @property
    def _op(self):
        name = _get_extra(self, EXTRA_OP)
        if name is not None:
            return None if name == () else name
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

    # data and grad are C doubles; assigning converts as the constructor does
    @property
    def data(self):
        return self.data

    @data.setter
    def data(self, x):
        self.data = x if type(x) is float else _as_real(x)

    @property
    def grad(self):
        return self.grad

    @grad.setter
    def grad(self, x):
        self.grad = x if type(x) is float else _as_real(x)

    def __reduce__(self):
        if self._flags & TAPED:
            _observe()
        extra = tuple(_extras[id(self)]) if self._flags & HAS_EXTRA else None
        args = (self.data, self.grad, self._code, self._a, _b_or_none(self),
                self._second.c if self._code == POWC else 0.0, self._flags & INT_EXP, extra)
        if self._flags & PICKLE_INNER or (self._a is None and self._code != CUSTOM):
            self._flags &= ~PICKLE_INNER
            return (_rebuild, args)
        # The nodes below first, in topological order: pickle and deepcopy then find each
        # node's operands already done, and never recurse (a 10M-node chain pickles).
        return (_rebuild_below, (_below(self),) + args)


def _rebuild_below(below, data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value pickled with the nodes below it (rebuilt before, by _rebuild)."""
    return _rebuild(data, grad, op, a, b, c, int_exp, extra)


cdef list _below(Value root):
    """Every node below root, each after its operands, each flagged PICKLE_INNER (so that
    its own __reduce__ gives only itself)."""
    cdef Py_ssize_t i, n
    cdef PyObject* p
    _begin_walk()
    try:
        n = _record(root, &_order, WALK_LEAVES)
        _unmark(_order.items, n)
        below = [None] * (n - 1)
        for i in range(n - 1):          # the root comes last
            p = _order.items[i]
            (<Value>p)._flags |= PICKLE_INNER
            below[i] = <Value>p
    finally:
        _end_walk()
    return below


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__). A pickle may come from anywhere: every
    argument is checked first (TypeError or ValueError), so no pickle can build a node
    the rules, the walk or a Tape would misread."""
    _check_rebuild(data, grad, op, a, b, c, int_exp, extra)
    cdef Value v = _node(_as_real(data), op, a, b, _as_real(c))
    v.grad = _as_real(grad)
    v._flags = int_exp
    if extra is not None:
        entry = list(extra) + [None] * (N_EXTRAS - len(extra))
        _extras[id(v)] = entry
        v._flags |= HAS_EXTRA
        if entry[EXTRA_RULE] is not None:
            v._flags |= USER_RULE
    return v


def _check_rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Raise unless _rebuild's arguments are what Value.__reduce__ gives for some node."""
    for name, x in (("data", data), ("grad", grad), ("c", c)):
        if not _is_real(x):
            raise TypeError("_rebuild: %s must be a real number, not %s" % (name, type(x).__name__))
    if type(op) is not int:
        raise TypeError("_rebuild: op must be an int, not %s" % type(op).__name__)
    if not LEAF <= op < FMA:            # FMA exists only inside a Tape
        raise ValueError("_rebuild: op %d is not a node's op code" % op)
    n_operands = 0 if op == LEAF or op == CUSTOM else 2 if op == ADD or op == MUL or op == POW else 1
    for name, x, wanted in (("a", a, n_operands >= 1), ("b", b, n_operands == 2)):
        if wanted and not isinstance(x, Value):
            raise _not_a_value("_rebuild: %s (op %d)" % (name, op), x)
        if not wanted and x is not None:
            raise ValueError("_rebuild: op %d takes no %s, got %s" % (op, name, type(x).__name__))
    if type(int_exp) is not int:
        raise TypeError("_rebuild: int_exp must be an int, not %s" % type(int_exp).__name__)
    if int_exp != 0 and not (int_exp == INT_EXP and op == POWC):   # never VISITED, DONE, TAPED...
        raise ValueError("_rebuild: int_exp must be 0, or %d for op %d (POWC), not %d" % (INT_EXP, POWC, int_exp))
    if int_exp and not (isfinite(_as_real(c)) and floor(_as_real(c)) == _as_real(c)):
        raise ValueError("_rebuild: an int exponent must be a whole number, not %r" % (c,))
    if extra is None:
        if op == CUSTOM:
            raise ValueError("_rebuild: a node built by hand (op %d) needs its children" % CUSTOM)
        return
    if type(extra) is not tuple or len(extra) not in (3, N_EXTRAS):    # 3: label, _op, _children
        raise TypeError("_rebuild: extra must be None or a tuple of %d, not %s" % (N_EXTRAS, type(extra).__name__))
    label, name, children = extra[:3]
    if len(extra) == N_EXTRAS:
        if extra[EXTRA_RULE] is not None and not callable(extra[EXTRA_RULE]):
            raise TypeError("_rebuild: _backward must be callable, not %s" % type(extra[EXTRA_RULE]).__name__)
        attrs = extra[EXTRA_ATTRS]
        if attrs is not None and (type(attrs) is not dict or not all(type(k) is str for k in attrs)):
            raise TypeError("_rebuild: attributes must be a dict with str keys")
    if label is not None and type(label) is not str:
        raise TypeError("_rebuild: label must be a str or None, not %s" % type(label).__name__)
    if name is not None and name != () and type(name) is not str:
        raise TypeError("_rebuild: _op must be a str or None, not %s" % type(name).__name__)
    if (children is not None) != (op == CUSTOM):
        raise ValueError("_rebuild: children go with op %d (a node built by hand) only" % CUSTOM)
    if children is not None:
        if type(children) is not tuple or not children:
            raise TypeError("_rebuild: children must be a non-empty tuple, not %s" % type(children).__name__)
        for child in children:
            if not isinstance(child, Value):
                raise _not_a_value("_rebuild: children", child)


def _is_real(x):
    """A real number, as a node's data: not complex, str or a foreign object."""
    return type(x) is float or type(x) is int or isinstance(x, _numbers.Real)


def _op_extra(_op):
    """How an _op given to Value() is kept in the extras: as given, () for None."""
    if _op is None:
        return ()
    if not isinstance(_op, str):
        raise TypeError("_op must be a str or None, not %s" % type(_op).__name__)
    return _op


_OTHER_CORE = 'micrograd._pure'    # the twin's module (its Value is micrograd._pure.node.Value)


def _other_core_value(x):
    """The other core's Value class if x is one of its Values (or subclasses), else None."""
    for cls in type(x).__mro__:
        if cls.__name__ == 'Value' and cls.__module__.startswith(_OTHER_CORE):
            return cls
    return None


def _not_a_value(what, x):
    """The TypeError for x where a Value is needed: a plain one, or, for the other core's
    Value, one that says the two cores cannot share a graph."""
    cls = _other_core_value(x)
    if cls is not None:
        return TypeError("%s: a %s.Value cannot be mixed with micrograd._engine Values in one "
                         "graph (the compiled core and the pure-Python twin each have their "
                         "own Value)" % (what, cls.__module__))
    return TypeError("%s must be Values, not %s" % (what, type(x).__name__))


cdef int _mark_used(tuple children) except -1:
    for child in children:
        (<Value>child)._flags |= USED
    return 0


cdef int _refuse_cycle(Value v, tuple children) except -1:
    """Raise ValueError if v is among children or below them: a graph must stay acyclic
    (a walk would order it wrongly, and the cycle would keep it alive forever)."""
    stack = [c for c in children if isinstance(c, Value)]
    seen = set()
    while stack:
        n = <Value>stack.pop()
        if n is v:
            raise ValueError("a Value cannot be its own descendant: the graph would have a cycle")
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n._code == CUSTOM:
            stack.extend(_get_extra(n, EXTRA_CHILDREN))
        elif n._a is not None:
            stack.append(n._a)
            if _b(n) != NULL:
                stack.append(<Value>_b(n))
    return 0


# Building nodes: a C factory, as uvloop builds its handles. Value.__new__ would go
# through the generic tp_new (an argument tuple, None stored to _a and then replaced, a
# memset call): 29 instructions more per node (RESULTS' technique table).
cdef extern from *:
    object _owned "(PyObject*)"(PyObject* o)    # o's one reference, handed to Cython as is


cdef inline Value _node(double data, int op, Value a, Value b, double c):
    cdef PyObject* o = _take_slot()
    if o == NULL:
        raise MemoryError()
    Py_INCREF(a)                            # released by _value_dealloc
    (<_NodeStart*>o).a = <PyObject*>a
    cdef Value v = <Value>_owned(_init_node(o, <_TypeSlots*>Value))
    v.data = data
    v._code = op
    if a is not None:
        a._flags |= USED
    if op == POWC:
        v._second.c = c
    elif b is not None:
        b._flags |= USED
        Py_INCREF(b)                        # released by _value_dealloc
        v._second.b = <PyObject*>b
    return v


cdef int _check_node_start() except -1:
    """_node writes _a through _NodeStart: check that it lies where Value's _a does."""
    cdef Value v = Value.__new__(Value)     # all zero, but for _a: None
    cdef _NodeStart* start = <_NodeStart*><PyObject*>v
    if start.a != <PyObject*>None or &start.data != &v.data or &start.grad != &v.grad:
        raise SystemError("micrograd: _NodeStart does not match Value's layout")
    return 0


_check_node_start()


cdef inline PyObject* _b(Value v) noexcept:
    """v's second operand (borrowed), or NULL: leaves, unary ops and POWC have none."""
    return NULL if v._code == POWC else v._second.b


cdef int _reset(Value v) except -1:
    """Make v a fresh leaf again, keeping only its data (and TAPED: a live tape has it)."""
    cdef PyObject* b = _b(v)
    v._code = LEAF
    v._second.b = NULL          # also clears POWC's exponent, which must not be read as a pointer
    v._flags &= TAPED | USED
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
        if type(exponent) is bool:      # upstream's f'**{other}' names it '**True'
            _set_extra(v, 1, '**%r' % exponent)
    return v


cdef inline bint _is_number(object x):
    """Is x a real scalar? int, float, bool, numpy scalars, Fraction, Decimal; not str,
    complex or an array (an array operand is left to numpy, as float * array is)."""
    if isinstance(x, (float, int)):     # numpy's float64 too: the ABCs below cost ~250 ns
        return True
    if isinstance(x, _numbers.Real) or (isinstance(x, _numbers.Number) and not isinstance(x, _numbers.Complex)):
        return True
    if _other_core_value(x) is not None:
        raise _not_a_value("operand", x)    # the other core's Value: say so
    return False


cdef inline double _as_double(object x) except? -1.0:
    return x        # Cython: PyFloat_AsDouble, OverflowError for ints beyond float range
                    # (a float subclass: its stored value, never its __float__)


cdef double _as_real(object x) except? -1.0:
    """x as a node's number: as _as_double, but a complex (numpy's too) is a TypeError,
    not a ComplexWarning and a dropped imaginary part."""
    if type(x) is float or type(x) is int:      # the common cases, without ABC checks
        return x
    if isinstance(x, _numbers.Complex) and not isinstance(x, _numbers.Real):
        raise TypeError("can't convert complex to float")
    return x


cdef inline Value _operand(object other):
    """other as a Value operand (a new constant leaf for a number), None if not a number."""
    if isinstance(other, Value):
        return <Value>other
    return _constant(other)     # apart, so that the C compiler inlines the common case


cdef Value _constant(object other):
    """A new constant leaf for the number other; None if other is not a number."""
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))

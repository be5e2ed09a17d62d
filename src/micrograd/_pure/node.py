"""The node: the Value class, building nodes, pickling. The twin of ``src/core/node.pxi``.

The twin's Value has a ``__dict__`` (for attributes the class does not define, see
extras.py) and its data and grad are properties (the core's are C doubles).
"""
import numbers as _numbers

from micrograd._pure.declarations import (
    LEAF, ADD, MUL, POWC, POW, RELU, TANH, EXP, LOG, SIGMOID, CUSTOM,
    INT_EXP, HAS_EXTRA, USER_RULE, WALK_CHECK,
    EXTRA_LABEL, EXTRA_OP, EXTRA_CHILDREN, EXTRA_RULE, EXTRA_ATTRS, N_EXTRAS)
from micrograd._pure import walk as _walk
from micrograd._pure.extras import _get_extra, _set_extra, _set_rule, _clear_rule
from micrograd._pure.rules import _forward, _pow, _can_raise, _check_partials
from micrograd._pure.walk import _begin_walk, _end_walk, _record, _accumulate, _chain, _y

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid', CUSTOM: ''}


class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""
    __slots__ = (
        '_data',    # forward value (the `data` property: always a float)
        '_grad',    # d(root)/d(self), accumulated by backward() (the `grad` property)
        '_a',       # first operand, None for a leaf
        '_b',       # second operand, None for unary ops and POWC
        '_c',       # POWC's exponent; unused by other ops
        '_code',    # op code: selects the forward and the local-gradient rule
        '_flags',   # VISITED | DONE | INT_EXP | HAS_EXTRA | USER_RULE bits
        '_extra',   # EXTRA_* fields or None (the C core: a side table)
        '_slot',    # scratch: this node's slot in the Tape being recorded
        '__dict__',  # attributes the class does not define (the core: its side table)
    )

    def __init__(self, data, _children=(), _op='', label=''):
        if type(data) is not float and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        if getattr(self, "_code", LEAF) != LEAF or getattr(self, "_flags", 0):
            if _walk._walking:    # as the core: resetting drops children a walk points into
                raise RuntimeError("Value.__init__ on an existing node while a graph is "
                                   "being walked (from a _backward, finalizer or gc callback?)")
        self.data = _as_double(data)
        self.grad = 0.0
        self._a = self._b = self._extra = None
        self._c = 0.0
        self._code = LEAF
        self._flags = 0
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

    # data and grad are C doubles in the compiled core: assigning converts to float
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, x):
        self._data = x if type(x) is float else _as_double(x)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, x):
        self._grad = x if type(x) is float else _as_double(x)

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

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            return NotImplemented
        if isinstance(other, Value):
            return _binary(POW, self, other)
        if not _is_number(other):
            return NotImplemented
        return _powc(self, other)

    def __rpow__(self, other, modulo=None):  # other ** self
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
            return _binary(ADD, self, _neg(other))
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
        _begin_walk()
        try:
            order = []
            _record(self, order, WALK_CHECK)
            self.grad = 1.0
            _accumulate(order)
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
        if _can_raise(self._code):
            _check_partials(self._code, self._a.data, _y(self))
        _chain(self)

    # -- what upstream exposes as attributes --------------------------------------------
    @property
    def _prev(self):
        if self._code == CUSTOM:
            return set(_get_extra(self, EXTRA_CHILDREN))
        if self._a is None:
            return set()
        if self._b is None:
            return {self._a}
        return {self._a, self._b}

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
        if _walk._walking:
            raise RuntimeError("_prev set while a graph is being walked")
        self._code = CUSTOM if children else LEAF
        _set_extra(self, EXTRA_CHILDREN, children if children else None)

    @property
    def _op(self):
        name = _get_extra(self, EXTRA_OP)
        if name is not None:
            return name
        if self._code == POWC:
            return '**%r' % (int(self._c) if self._flags & INT_EXP else self._c)
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
        extra = list(self._extra) if self._flags & HAS_EXTRA else None
        if self.__dict__:           # pickled where the core keeps its attributes
            extra = extra or [None] * N_EXTRAS
            extra[EXTRA_ATTRS] = dict(self.__dict__)
        extra = None if extra is None else tuple(extra)
        return (_rebuild, (self.data, self.grad, self._code, self._a, self._b, self._c,
                           self._flags & INT_EXP, extra))


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__)."""
    v = _node(data, op, a, b, c)
    v.grad = grad
    v._flags = int_exp
    if extra is not None:
        entry = list(extra) + [None] * (N_EXTRAS - len(extra))
        if entry[EXTRA_ATTRS] is not None:
            v.__dict__.update(entry[EXTRA_ATTRS])
            entry[EXTRA_ATTRS] = None
        v._extra = entry
        v._flags |= HAS_EXTRA
        if entry[EXTRA_RULE] is not None:
            v._flags |= USER_RULE
    return v


# Building nodes. Value.__new__ skips __init__.
def _node(data, op, a, b, c):
    v = Value.__new__(Value)
    v.data = data
    v.grad = 0.0
    v._code = op
    v._a = a
    v._b = b
    v._c = c
    v._flags = 0
    v._extra = None
    return v


def _leaf(data):
    return _node(data, LEAF, None, None, 0.0)


def _binary(op, a, b):
    return _node(_forward(op, a.data, b.data), op, a, b, 0.0)


def _unary(op, a):
    return _node(_forward(op, a.data, 0.0), op, a, None, 0.0)


def _neg(a):
    """-a, built as upstream builds it: a * -1."""
    return _binary(MUL, a, _leaf(-1.0))


def _powc(a, exponent):
    c = _as_double(exponent)
    v = _node(_forward(POWC, a.data, c), POWC, a, None, c)
    if isinstance(exponent, int):
        v._flags = INT_EXP
    return v


def _is_number(x):
    """Is x a real scalar? int, float, bool, numpy scalars, Fraction, Decimal; not str,
    complex or an array (an array operand is left to numpy, as float * array is)."""
    if type(x) is float or type(x) is int:
        return True
    return isinstance(x, _numbers.Real) or (isinstance(x, _numbers.Number) and not isinstance(x, _numbers.Complex))


def _as_double(x):
    """float(x), but without parsing strings: what the C core's double conversion does."""
    if isinstance(x, (str, bytes, bytearray)):
        raise TypeError("must be real number, not %s" % type(x).__name__)
    return float(x)         # OverflowError for ints beyond float range


def _operand(other):
    """other as a Value operand (a new constant leaf for a number), None if not a number."""
    if isinstance(other, Value):
        return other
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))


_walk.Value = Value     # walk.py tells plain nodes from subclass instances by it

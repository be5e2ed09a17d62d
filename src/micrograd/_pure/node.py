"""The node: the Value class, building nodes, pickling. The twin of ``src/core/node.pxi``.

The twin's Value has a ``__dict__`` (for attributes the class does not define, see
extras.py) and its data and grad are properties (the core's are C doubles).
"""
import math
import numbers as _numbers

from micrograd._pure.declarations import (
    LEAF, ADD, MUL, POWC, POW, RELU, TANH, EXP, LOG, SIGMOID, CUSTOM, FMA,
    INT_EXP, HAS_EXTRA, USER_RULE, USED, PICKLE_INNER, WALK_CHECK, WALK_LEAVES,
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

    def __new__(cls, *args, **kwargs):
        # zeroed fields, as the core's allocator gives: a subclass whose __init__ does
        # not call Value.__init__ (upstream's pasted engine.py) still has a valid node
        v = object.__new__(cls)
        v._data = v._grad = v._c = 0.0
        v._a = v._b = v._extra = None
        v._code = LEAF
        v._flags = 0
        return v

    def __init__(self, data, _children=(), _op='', label=''):
        if not isinstance(data, (float, int)) and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        if getattr(self, "_code", LEAF) != LEAF or getattr(self, "_flags", 0):
            if _walk._walking:    # as the core: resetting drops children a walk points into
                raise RuntimeError("Value.__init__ on an existing node while a graph is "
                                   "being walked (from a _backward, finalizer or gc callback?)")
        if _children and self._flags & USED:
            # __init__ again on a node already below others: it may be below its new
            # children too (a cycle; the core could not free it)
            _children = tuple(_children)
            _refuse_cycle(self, _children)
        used = self._flags & USED
        self.data = _as_double(data)
        self.grad = 0.0
        self._a = self._b = self._extra = None
        self._c = 0.0
        self._code = LEAF
        self._flags = used
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

    # data and grad are C doubles in the compiled core: assigning converts to float
    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, x):
        self._data = x if type(x) is float else _as_real(x)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, x):
        self._grad = x if type(x) is float else _as_real(x)

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
        args = (self.data, self.grad, self._code, self._a, self._b, self._c,
                self._flags & INT_EXP, extra)
        if self._flags & PICKLE_INNER or (self._a is None and self._code != CUSTOM):
            self._flags &= ~PICKLE_INNER
            return (_rebuild, args)
        # The nodes below first, in topological order: pickle and deepcopy then find each
        # node's operands already done, and never recurse (a 10M-node chain pickles).
        return (_rebuild_below, (_below(self),) + args)


def _rebuild_below(below, data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value pickled with the nodes below it (rebuilt before, by _rebuild)."""
    return _rebuild(data, grad, op, a, b, c, int_exp, extra)


def _below(root):
    """Every node below root, each after its operands, each flagged PICKLE_INNER (so that
    its own __reduce__ gives only itself)."""
    _begin_walk()
    try:
        order = []
        _record(root, order, WALK_LEAVES)
        _walk._unmark(order)
        order.pop()                     # the root comes last
        for p in order:
            p._flags |= PICKLE_INNER
    finally:
        _end_walk()
    return order


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__). A pickle may come from anywhere: every
    argument is checked first (TypeError or ValueError), so no pickle can build a node
    the rules, the walk or a Tape would misread."""
    _check_rebuild(data, grad, op, a, b, c, int_exp, extra)
    v = _node(_as_real(data), op, a, b, _as_real(c))
    v.grad = _as_real(grad)
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
    if int_exp != 0 and not (int_exp == INT_EXP and op == POWC):   # never VISITED, DONE...
        raise ValueError("_rebuild: int_exp must be 0, or %d for op %d (POWC), not %d" % (INT_EXP, POWC, int_exp))
    if int_exp and not (math.isfinite(_as_real(c)) and math.floor(_as_real(c)) == _as_real(c)):
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


_OTHER_CORE = 'micrograd._engine'  # the compiled core's module


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
        return TypeError("%s: a %s.Value cannot be mixed with micrograd._pure Values in one "
                         "graph (the compiled core and the pure-Python twin each have their "
                         "own Value)" % (what, cls.__module__))
    return TypeError("%s must be Values, not %s" % (what, type(x).__name__))


def _mark_used(children):
    for child in children:
        child._flags |= USED


def _refuse_cycle(v, children):
    """Raise ValueError if v is among children or below them: a graph must stay acyclic
    (a walk would order it wrongly)."""
    stack = [c for c in children if isinstance(c, Value)]
    seen = set()
    while stack:
        n = stack.pop()
        if n is v:
            raise ValueError("a Value cannot be its own descendant: the graph would have a cycle")
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n._code == CUSTOM:
            stack.extend(_get_extra(n, EXTRA_CHILDREN))
        elif n._a is not None:
            stack.append(n._a)
            if n._b is not None:
                stack.append(n._b)


# Building nodes. Value.__new__ skips __init__.
def _node(data, op, a, b, c):
    v = object.__new__(Value)     # every field is set here: skip Value.__new__ too
    v.data = data
    v.grad = 0.0
    v._code = op
    v._a = a
    v._b = b
    v._c = c
    v._flags = 0
    v._extra = None
    if a is not None:
        a._flags |= USED
    if b is not None:
        b._flags |= USED
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
        if type(exponent) is bool:      # upstream's f'**{other}' names it '**True'
            _set_extra(v, 1, '**%r' % exponent)
    return v


def _is_number(x):
    """Is x a real scalar? int, float, bool, numpy scalars, Fraction, Decimal; not str,
    complex or an array (an array operand is left to numpy, as float * array is)."""
    if isinstance(x, (float, int)):     # numpy's float64 too: the ABCs below cost ~250 ns
        return True
    if isinstance(x, _numbers.Real) or (isinstance(x, _numbers.Number) and not isinstance(x, _numbers.Complex)):
        return True
    if _other_core_value(x) is not None:
        raise _not_a_value("operand", x)    # the other core's Value: say so
    return False


def _as_double(x):
    """float(x), but without parsing strings: what the C core's double conversion does."""
    if isinstance(x, float):
        return float.__float__(x)   # a float subclass: its stored value, never its __float__
    if isinstance(x, (str, bytes, bytearray)):
        raise TypeError("must be real number, not %s" % type(x).__name__)
    return float(x)         # OverflowError for ints beyond float range


def _as_real(x):
    """x as a node's number: as _as_double, but a complex (numpy's too) is a TypeError,
    not a ComplexWarning and a dropped imaginary part."""
    if not isinstance(x, (float, int)) and isinstance(x, _numbers.Complex) and not isinstance(x, _numbers.Real):
        raise TypeError("can't convert complex to float")
    return _as_double(x)


def _operand(other):
    """other as a Value operand (a new constant leaf for a number), None if not a number."""
    if isinstance(other, Value):
        return other
    return _constant(other)


def _constant(other):
    """A new constant leaf for the number other; None if other is not a number."""
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))


_walk.Value = Value     # walk.py tells plain nodes from subclass instances by it

"""The pure-Python twin of the compiled core (``src/_engine.pyx``).

Same op codes, same rules in the same order, same iterative topological walk, same
names: hold the two files side by side. Selected by ``MICROGRAD_PURE_PYTHON=1``, or
automatically when the compiled module cannot be imported.

What only the compiled core needs has no counterpart here: C arrays become lists,
the freeing stack is CPython's own trashcan, and the rare per-node extras (label,
hand-built ``_op``/``_children``) sit in a slot instead of a side table.
"""
import math
import numbers as _numbers

# Op codes: one small int per node selects its forward and its local-gradient rule.
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
VISITED = 1      # entered by the current topological walk (cleared when it ends)
DONE = 2         # appended to the current walk's tape (cleared when it ends)
INT_EXP = 4      # POWC's exponent was an int: _op shows '**2', not '**2.0'
HAS_EXTRA = 8    # this node has extras (label, hand-built _op/_children)

_OP_NAMES = {LEAF: '', ADD: '+', MUL: '*', POW: '**', RELU: 'ReLU', TANH: 'tanh',
             EXP: 'exp', LOG: 'log', SIGMOID: 'sigmoid', CUSTOM: ''}


# ---------------------------------------------------------------------------------
# Python's float semantics for the three functions that can fail.
# ---------------------------------------------------------------------------------
def _pow(x, y):
    if x == 0.0 and y < 0.0 and math.isfinite(y):
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if x < 0.0 and math.isfinite(x) and math.isfinite(y) and y != math.floor(y):
        # float ** would return a complex number here; a scalar engine has no use for one
        raise ValueError("negative number cannot be raised to a fractional power")
    return x ** y       # raises OverflowError itself


def _exp(x):
    return math.exp(x)  # raises OverflowError itself


def _log(x):
    if x <= 0.0:
        raise ValueError("math domain error")
    return math.log(x)


def _sigmoid(x):
    # Two forms so that exp() never overflows: e**-x for x >= 0, e**x otherwise.
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------
# The rule book: each op's forward rule and its local gradients, side by side.
# Both work on plain floats, so eager backward() (on Value fields) and Tape replay
# (on dense lists) share them. x is the first operand's data; y is the second
# operand's data, or POWC's constant exponent, or 0.0 for unary ops.
# ---------------------------------------------------------------------------------
def _forward(op, x, y):
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
        return math.tanh(x)
    elif op == EXP:
        return _exp(x)
    elif op == LOG:
        return _log(x)
    elif op == SIGMOID:
        return _sigmoid(x)
    raise AssertionError("no forward rule for op %d" % op)


def _partials(op, x, y, out):
    """(d(out)/dx, d(out)/dy): what the chain rule multiplies out.grad by.

    Never raises: the inputs where Python would (0 ** negative, 1/0) are rejected
    first by _check_partials, so that a failing backward changes no grad.
    """
    dy = 0.0
    if op == ADD:
        dx = 1.0
        dy = 1.0
    elif op == MUL:
        dx = y
        dy = x
    elif op == POWC:                    # y is a constant: no gradient for it
        dx = y * x ** (y - 1.0)
    elif op == POW:
        dx = y * x ** (y - 1.0)
        if x != 0.0:                    # 0 ** y is flat in y (for y > 0)
            dy = out * math.log(x)
    elif op == RELU:
        dx = float(out > 0.0)
    elif op == TANH:
        dx = 1.0 - out * out
    elif op == EXP:
        dx = out
    elif op == LOG:
        dx = 1.0 / x
    elif op == SIGMOID:
        dx = out * (1.0 - out)
    else:                               # LEAF and CUSTOM have no rule
        dx = 0.0
    return dx, dy


# FMA, the tape's one fused op: out = acc + a*b, with partials 1 for acc, b for a and
# a for b. A Tape writes ADD(acc, MUL(a, b)) this way when the MUL node feeds only that
# ADD and comes right before it: one instruction instead of two, and the same floats,
# in the same order, as the two ops. Its forward and backward are written in Tape's loops.


def _can_raise(op):
    """Ops whose partials can raise (see _check_partials)."""
    return op == POWC or op == POW or op == LOG


def _check_partials(op, x, y):
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
# The node.
# ---------------------------------------------------------------------------------
class Value:
    """A scalar and its gradient, as in micrograd (see the README for the differences)."""
    __slots__ = (
        '_data',    # forward value (the `data` property: always a float)
        '_grad',    # d(root)/d(self), accumulated by backward() (the `grad` property)
        '_a',       # first operand, None for a leaf
        '_b',       # second operand, None for unary ops and POWC
        '_c',       # POWC's exponent; unused by other ops
        '_code',    # op code: selects the forward and the local-gradient rule
        '_flags',   # VISITED | DONE | INT_EXP | HAS_EXTRA bits
        '_extra',   # [label, op string, children] or None (the C core: a side table)
        '_slot',    # scratch: this node's slot in the Tape being recorded
    )

    def __init__(self, data, _children=(), _op='', label=''):
        if type(data) is not float and isinstance(data, _numbers.Complex) and not isinstance(data, _numbers.Real):
            # float() would only warn and drop a numpy complex's imaginary part
            raise TypeError("can't convert complex to float")
        self.data = _as_double(data)
        self.grad = 0.0
        self._a = self._b = self._extra = None
        self._c = 0.0
        self._code = LEAF
        self._flags = 0
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
        if type(other) is Value:
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
        if type(other) is Value:
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
        _begin_walk()
        try:
            order = []
            _record(self, order, True, False)
            self.grad = 1.0
            _accumulate(order)
        finally:
            _end_walk()

    def _backward(self):
        """Apply this node's local-gradient rule once (as upstream's closure does)."""
        if _can_raise(self._code):
            _check_partials(self._code, self._a.data, _y(self))
        _chain(self)

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
        extra = tuple(self._extra) if self._flags & HAS_EXTRA else None
        return (_rebuild, (self.data, self.grad, self._code, self._a, self._b, self._c,
                           self._flags & INT_EXP, extra))


def _rebuild(data, grad, op, a, b, c, int_exp, extra):
    """Unpickle a Value (see Value.__reduce__)."""
    v = _node(data, op, a, b, c)
    v.grad = grad
    v._flags = int_exp
    if extra is not None:
        v._extra = list(extra)
        v._flags |= HAS_EXTRA
    return v


# ---------------------------------------------------------------------------------
# Building nodes. Value.__new__ skips __init__.
# ---------------------------------------------------------------------------------
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
    if type(other) is Value:
        return other
    if not _is_number(other):
        return None
    return _leaf(_as_double(other))


def _get_extra(v, field):
    if not v._flags & HAS_EXTRA:
        return None
    return v._extra[field]


def _set_extra(v, field, item):
    if not v._flags & HAS_EXTRA:
        v._extra = [None, None, None]
        v._flags |= HAS_EXTRA
    v._extra[field] = item


# ---------------------------------------------------------------------------------
# The topological order ("tape"): an explicit stack and per-node marks replace
# upstream's recursive build_topo and its visited set.
# ---------------------------------------------------------------------------------
_walking = False     # a walk's marks (and a recording Tape's _slot numbers) are in use


def _begin_walk():
    """Claim the nodes' marks for one walk (released with _end_walk).

    Python code can run in the middle of a walk through the garbage collector (a
    finalizer or gc callback); a backward() or Tape() from there would clobber the
    outer walk's marks, so it raises instead, as the compiled core does."""
    global _walking
    if _walking:
        raise RuntimeError("backward() or Tape() called while another one is walking a graph "
                           "(from a finalizer or a gc callback?)")
    _walking = True


def _end_walk():
    global _walking
    _walking = False


def _wanted(child, leaves):
    """Should the walk enter child? Not twice, and not a leaf unless leaves are wanted."""
    return not child._flags & VISITED and (leaves or child._code != LEAF)


def _record(root, order, check, leaves):
    """Fill order with every node below root, each after all its operands (post-order DFS).

    With check, also raise (before anything is changed) what backward would raise.
    Without leaves, leaves below root are neither recorded nor marked: they have no
    rule for backward to apply (a wide sum's leaves would double the walk).
    On success the recorded nodes stay marked: the caller clears the marks with
    _accumulate or _unmark. On error they are cleared here.
    """
    stack = [root]
    emitting = None
    try:
        while stack:
            p = stack[-1]
            if not p._flags & VISITED:
                # first visit: push the operands; p stays below them on the stack
                p._flags |= VISITED
                if p._code == CUSTOM:
                    for c in _get_extra(p, 2):
                        if _wanted(c, leaves):
                            stack.append(c)
                    continue
                child = p._b
                if child is not None and _wanted(child, leaves):
                    stack.append(child)
                child = p._a
                if child is not None and _wanted(child, leaves):
                    stack.append(child)
            else:
                # operands done (or a stale duplicate entry): emit p once
                stack.pop()
                if not p._flags & DONE:
                    p._flags |= DONE
                    emitting = p        # if the append runs out of memory, p is on no list
                    order.append(p)
                    emitting = None
                    if check and _can_raise(p._code):
                        _check_partials(p._code, p._a.data, _y(p))
    except BaseException:
        _unmark(order)
        _unmark(stack)
        if emitting is not None:
            _unmark([emitting])
        raise
    return 0


def _unmark(nodes):
    for p in nodes:
        p._flags &= ~(VISITED | DONE)


def _y(v):
    """The y of v's rule: second operand's data, POWC's exponent, or 0.0 (unary)."""
    return v._b.data if v._b is not None else v._c


def _chain(out):
    """Apply out's local rule: add out.grad * d(out)/d(operand) to each operand's grad."""
    if out._a is None:          # LEAF or CUSTOM: no rule
        return
    dx, dy = _partials(out._code, out._a.data, _y(out), out.data)
    out._a.grad += dx * out.grad
    if out._b is not None:
        out._b.grad += dy * out.grad


def _accumulate(nodes):
    """Apply every local rule, root first (reversed topological order); clear the marks."""
    for p in reversed(nodes):
        p._flags &= ~(VISITED | DONE)
        _chain(p)


# ---------------------------------------------------------------------------------
# Tape: record a graph once, then replay forward and backward over dense lists.
#
# Recording numbers every node with a slot: leaves first, then op nodes in
# topological order, then constants (0.0 for unary ops' y, POWC exponents). Op k
# writes slot n_leaves + k from slots x[k] and y[k]. The C core copies values back
# only into the Values a user holds and syncs the rest on demand; the twin simply
# writes every node back after each replay (same results, simpler, slower).
# ---------------------------------------------------------------------------------
class Tape:
    """The graph below a root, recorded in topological order for replay.

    forward() recomputes every node from the leaves' current data and returns the
    root's; backward() gives the gradients root.backward() would give on a freshly
    built graph. Python control flow is frozen at record time; data-dependent ops
    (relu's branch, ...) are re-evaluated on every replay.
    """

    def __init__(self, root):
        if type(root) is not Value:
            raise TypeError("Tape() needs a Value, not %s" % type(root).__name__)
        if hasattr(self, "_nodes"):
            raise RuntimeError("Tape is already initialised")
        _begin_walk()           # the nodes' marks and _slot are in use until compiled
        try:
            self._build(root)
        finally:
            _end_walk()

    def _build(self, root):
        order = []
        _record(root, order, False, True)
        _unmark(order)
        # Number the nodes in walk order and count each one's consumers in the graph.
        for i, p in enumerate(order):
            p._slot = i
        refs = [0] * len(order)
        for p in order:
            if p._a is not None:
                refs[p._a._slot] += 1
                if p._b is not None:
                    refs[p._b._slot] += 1
        # A MUL fuses into the ADD right after it when that ADD is its only consumer.
        # (The compiled core also keeps MULs the user holds unfused: it writes back
        # only held nodes on replay. The twin writes every node back.)
        fused, prev = set(), None
        for p in order:
            if p._a is None:            # LEAF, or CUSTOM (its data is taken as given)
                continue
            if (p._code == ADD and prev is not None and prev._code == MUL
                    and refs[prev._slot] == 1 and (p._a is prev or p._b is prev)):
                fused.add(prev)
            prev = p
        leaves = [p for p in order if p._a is None]
        code = [p for p in order if p._a is not None and p not in fused]
        muls = [p for p in order if p in fused]
        self._nodes = leaves + code + muls      # the Value recorded in slot s
        self.n_leaves = len(leaves)     # slots [0, n_leaves): leaves, read by every forward()
        # leaf slots: those used more than once (or never: a lone root), then those used
        # once, whose grads backward() adds to without reading them first (see there)
        self.by_use = ([s for s, p in enumerate(leaves) if refs[p._slot] != 1]
                       + [s for s, p in enumerate(leaves) if refs[p._slot] == 1])
        self.n_shared = sum(refs[p._slot] != 1 for p in leaves)
        self.n_ops = len(code) + len(muls)   # op nodes: first the n_code run by
        self.n_code = len(code)         # instructions, then the MULs fused into an FMA
        for s, p in enumerate(self._nodes):
            p._slot = s
        n = len(self._nodes)
        self.val = [p.data for p in self._nodes] + [0.0]   # slot n: 0.0, unary ops' y
        self.grd = [p.grad for p in self._nodes] + [0.0]
        self.op, self.x, self.y, self.z, self.checked = [], [], [], [], []
        self.fused_in = []              # per fused MUL: its FMA's instruction number
        for k, v in enumerate(code):
            self.op.append(v._code)
            self.x.append(v._a._slot)
            self.z.append(0)
            if v._b is not None:
                self.y.append(v._b._slot)
            elif v._code == POWC:
                self.y.append(len(self.val))
                self.val.append(v._c)
                self.grd.append(0.0)
            else:
                self.y.append(n)
            if v._code == ADD and max(v._a._slot, v._b._slot) >= self.n_leaves + self.n_code:
                m = v._b if v._b._slot > v._a._slot else v._a    # the fused MUL: its slot
                self.op[k] = FMA                                 # is the higher one
                self.x[k] = v._a._slot if m is v._b else v._b._slot
                self.y[k] = m._a._slot
                self.z[k] = m._b._slot
                self.fused_in.append(k)
            if _can_raise(v._code):
                self.checked.append(k)
        self.root_slot = root._slot
        self._root = root

    def _fill_fused(self):
        """The fused MULs' data and grads, which replay skips, for writing back."""
        f = self.n_leaves + self.n_code
        for j, k in enumerate(self.fused_in):
            self.val[f + j] = self.val[self.y[k]] * self.val[self.z[k]]
            self.grd[f + j] = self.grd[self.n_leaves + k]  # the ADD's grad, passed on

    def forward(self):
        """Recompute every node from the leaves' current data; return the root's data."""
        base, op, x, y, z = self.n_leaves, self.op, self.x, self.y, self.z
        val = list(self.val)    # computed aside: a replay that raises leaves val as it was
        for s in range(base):
            val[s] = self._nodes[s].data
        for k in range(self.n_code):
            if op[k] == FMA:
                val[base + k] = val[x[k]] + val[y[k]] * val[z[k]]
            else:
                val[base + k] = _forward(op[k], val[x[k]], val[y[k]])
        self.val = val
        self._fill_fused()
        for s in range(base, base + self.n_ops):
            self._nodes[s].data = val[s]
        return val[self.root_slot]

    def backward(self):
        """Gradients of the root, as root.backward() on a freshly built graph: op nodes'
        grads restart from 0, the root's is 1, leaves' grads accumulate."""
        base, val, grd = self.n_leaves, self.val, self.grd
        op, x, y, z = self.op, self.x, self.y, self.z
        for k in self.checked:                  # raise before any grad changes
            _check_partials(op[k], val[x[k]], val[y[k]])
        # Leaves accumulate: old grad + c1 + c2 + ... in eager's order. A leaf used once
        # gets one c: it starts from -0.0 (for which -0.0 + c is c, bit for bit) and
        # is added to its Value at the end, so its Value is visited once, not twice.
        for s in self.by_use[:self.n_shared]:
            grd[s] = self._nodes[s].grad
        for s in self.by_use[self.n_shared:]:
            grd[s] = -0.0
        for s in range(base, len(grd)):         # op nodes' grads restart from 0
            grd[s] = 0.0
        grd[self.root_slot] = 1.0
        for k in range(self.n_code - 1, -1, -1):
            g = grd[base + k]
            if op[k] == FMA:
                grd[x[k]] += g                  # the ADD passes g to acc and to the MUL
                grd[y[k]] += val[z[k]] * g
                grd[z[k]] += val[y[k]] * g
            else:
                dx, dy = _partials(op[k], val[x[k]], val[y[k]], val[base + k])
                grd[x[k]] += dx * g
                grd[y[k]] += dy * g             # unary ops: lands in a constant's slot
        for s in self.by_use[:self.n_shared]:
            self._nodes[s].grad = grd[s]
        for s in self.by_use[self.n_shared:]:
            self._nodes[s].grad += grd[s]
        self._fill_fused()
        for s in range(base, base + self.n_ops):
            self._nodes[s].grad = grd[s]

    def __len__(self):
        return self.n_leaves + self.n_ops

    @property
    def root(self):
        return self._root

    @property
    def leaves(self):
        """The recorded nodes without a rule (parameters, inputs, constants), in order."""
        return self._nodes[:self.n_leaves]

    @property
    def nodes(self):
        """Every recorded node, leaves first, then op nodes in topological order."""
        base = self.n_leaves
        nodes = self._nodes[:base]
        fused = iter(self._nodes[base + self.n_code:])
        for k in range(self.n_code):
            if self.op[k] == FMA:          # its fused MUL came right before it
                nodes.append(next(fused))
            nodes.append(self._nodes[base + k])
        return nodes

    @property
    def n_instructions(self):
        """How many instructions a replay runs: one per op node, less the fused MULs."""
        return self.n_code

    def __repr__(self):
        return "Tape(%d nodes, %d leaves, %d instructions)" % (
            len(self), self.n_leaves, self.n_code)

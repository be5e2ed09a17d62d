"""The Value node's operations on both cores: values and gradients, upstream's
attributes (_op, _prev, label, repr), identity semantics, float data, numpy operands."""
import math

import numpy as np
import pytest


# ---------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------
def numeric_grad(engine, f, xs, i, h=1e-6):
    """Central finite difference of f's output w.r.t. input i."""
    V = engine.Value
    up = list(xs)
    down = list(xs)
    up[i] += h
    down[i] -= h
    return (f(*map(V, up)).data - f(*map(V, down)).data) / (2 * h)


def check_op(engine, f, ref, xs):
    """f on Values: data equals ref on floats; every input's grad matches finite differences."""
    V = engine.Value
    vs = [V(x) for x in xs]
    out = f(*vs)
    assert type(out) is V
    assert type(out.data) is float
    assert out.data == pytest.approx(ref(*xs), rel=1e-12, abs=1e-12)
    out.backward()
    assert out.grad == 1.0
    for i, x in enumerate(xs):
        num = numeric_grad(engine, f, xs, i)
        assert vs[i].grad == pytest.approx(num, rel=1e-6, abs=1e-6), (i, vs[i].grad, num)
        assert vs[i].data == x      # backward never changes data


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# (id, f on Values, reference on floats, inputs)
OPS = [
    ("add", lambda a, b: a + b, lambda a, b: a + b, (1.5, -2.25)),
    ("add_num", lambda a: a + 2.5, lambda a: a + 2.5, (1.5,)),
    ("radd_num", lambda a: 2.5 + a, lambda a: 2.5 + a, (1.5,)),
    ("add_int", lambda a: a + 3, lambda a: a + 3, (1.5,)),
    ("add_self", lambda a: a + a, lambda a: a + a, (1.5,)),
    ("sub", lambda a, b: a - b, lambda a, b: a - b, (1.5, -2.25)),
    ("sub_num", lambda a: a - 2.5, lambda a: a - 2.5, (1.5,)),
    ("rsub_num", lambda a: 2.5 - a, lambda a: 2.5 - a, (1.5,)),
    ("sub_self", lambda a: a - a, lambda a: a - a, (1.5,)),
    ("mul", lambda a, b: a * b, lambda a, b: a * b, (1.5, -2.25)),
    ("mul_num", lambda a: a * 2.5, lambda a: a * 2.5, (1.5,)),
    ("rmul_num", lambda a: 2.5 * a, lambda a: 2.5 * a, (1.5,)),
    ("mul_self", lambda a: a * a, lambda a: a * a, (1.5,)),
    ("div", lambda a, b: a / b, lambda a, b: a / b, (1.5, -2.25)),
    ("div_num", lambda a: a / 2.5, lambda a: a / 2.5, (1.5,)),
    ("rdiv_num", lambda a: 2.5 / a, lambda a: 2.5 / a, (1.5,)),
    ("div_self", lambda a: a / a, lambda a: a / a, (1.5,)),
    ("neg", lambda a: -a, lambda a: -a, (1.5,)),
    ("pow2", lambda a: a ** 2, lambda a: a ** 2, (-1.5,)),
    ("pow3", lambda a: a ** 3, lambda a: a ** 3, (-1.5,)),
    ("pow_m1", lambda a: a ** -1, lambda a: a ** -1, (-1.5,)),
    ("pow_half", lambda a: a ** 0.5, lambda a: a ** 0.5, (2.0,)),
    ("pow_frac", lambda a: a ** 3.5, lambda a: a ** 3.5, (1.25,)),
    ("pow_zero", lambda a: a ** 0, lambda a: 1.0, (1.25,)),
    ("pow_np", lambda a: a ** np.float64(1.5), lambda a: a ** 1.5, (1.25,)),
    ("relu_pos", lambda a: a.relu(), lambda a: max(a, 0.0), (1.5,)),
    ("relu_neg", lambda a: a.relu(), lambda a: max(a, 0.0), (-1.5,)),
    ("tanh", lambda a: a.tanh(), math.tanh, (0.7,)),
    ("tanh_neg", lambda a: a.tanh(), math.tanh, (-1.3,)),
    ("exp", lambda a: a.exp(), math.exp, (0.7,)),
    ("log", lambda a: a.log(), math.log, (0.7,)),
    ("sigmoid", lambda a: a.sigmoid(), sigmoid, (0.7,)),
    ("sigmoid_neg", lambda a: a.sigmoid(), sigmoid, (-2.3,)),
    ("vpowv", lambda a, b: a ** b, lambda a, b: a ** b, (1.7, 2.3)),
    ("vpowv_neg_exp", lambda a, b: a ** b, lambda a, b: a ** b, (1.7, -0.6)),
    ("vpowv_self", lambda a: a ** a, lambda a: a ** a, (1.7,)),
    ("num_pow_v", lambda b: 2.0 ** b, lambda b: 2.0 ** b, (1.3,)),
    ("int_pow_v", lambda b: 3 ** b, lambda b: 3 ** b, (-0.4,)),
    ("composite", lambda a, b: ((a * b + b ** 2).tanh() * a.exp() - (b * b + 1).log()) / (a.sigmoid() + 2),
     lambda a, b: ((math.tanh(a * b + b ** 2) * math.exp(a) - math.log(b * b + 1))
                   / (sigmoid(a) + 2)), (0.3, -0.8)),
]


@pytest.mark.parametrize("f, ref, xs", [op[1:] for op in OPS], ids=[op[0] for op in OPS])
def test_op_value_and_gradient(engine, f, ref, xs):
    check_op(engine, f, ref, xs)


def test_exponent_gradients_exact(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    c = a ** b
    c.backward()
    assert c.data == 8.0
    assert a.grad == pytest.approx(3 * 2.0 ** 2, rel=1e-15)
    assert b.grad == pytest.approx(8.0 * math.log(2.0), rel=1e-15)
    x = V(3.0)
    y = 2 ** x
    y.backward()
    assert y.data == 8.0
    assert x.grad == pytest.approx(8.0 * math.log(2.0), rel=1e-15)


def test_zero_base_to_a_value_power_gives_no_exponent_gradient(engine):
    V = engine.Value
    a, b = V(0.0), V(2.0)
    c = a ** b
    c.backward()
    assert c.data == 0.0
    assert a.grad == 0.0        # 2 * 0 ** 1
    assert b.grad == 0.0        # 0 ** b is flat in b


@pytest.mark.parametrize("x", [-0.0, 0.0, -5e-324, 5e-324, -1.5, 2.5, -math.inf, math.inf, math.nan])
def test_relu_is_pythons_conditional_bit_for_bit(engine, x):
    """``0.0 if x < 0.0 else x``: -0.0 and nan pass through, eager and replayed alike (the
    compiled rule computes it without a branch, on the bits)."""
    want = 0.0 if x < 0.0 else x
    a = engine.Value(x)
    r = a.relu()
    eager = r.data
    tape = engine.Tape(r * 1.0)
    a.data = x                              # the replay recomputes r (held: written back)
    root = tape.forward()                   # r * 1.0: the same sign and nan
    for got in (eager, r.data, root):
        assert math.copysign(1.0, got) == math.copysign(1.0, want)
        assert got == want or (math.isnan(got) and math.isnan(want))


def test_relu_at_zero_has_zero_gradient(engine):
    a = engine.Value(0.0)
    r = a.relu()
    r.backward()
    assert r.data == 0.0
    assert a.grad == 0.0


def test_tanh_and_sigmoid_saturate_without_overflow(engine):
    V = engine.Value
    assert V(1000.0).tanh().data == 1.0
    assert V(-1000.0).tanh().data == -1.0
    assert V(1000.0).sigmoid().data == 1.0
    assert V(-1000.0).sigmoid().data == 0.0
    s = V(-800.0)
    out = s.sigmoid()
    out.backward()
    assert s.grad == 0.0


# ---------------------------------------------------------------------------------
# _op, _prev, label, repr, identity
# ---------------------------------------------------------------------------------
OP_STRINGS = [
    ("+", lambda a, b: a + b),
    ("+", lambda a, b: a + 1),
    ("+", lambda a, b: 1 + a),
    ("+", lambda a, b: a - b),
    ("+", lambda a, b: 1 - a),
    ("*", lambda a, b: a * b),
    ("*", lambda a, b: 2 * a),
    ("*", lambda a, b: -a),
    ("*", lambda a, b: a / b),
    ("*", lambda a, b: 2 / a),
    ("**2", lambda a, b: a ** 2),
    ("**-1", lambda a, b: a ** -1),
    ("**0.5", lambda a, b: a ** 0.5),
    ("**2.0", lambda a, b: a ** 2.0),
    ("**", lambda a, b: a ** b),
    ("**", lambda a, b: 2 ** b),
    ("ReLU", lambda a, b: a.relu()),
    ("tanh", lambda a, b: a.tanh()),
    ("exp", lambda a, b: a.exp()),
    ("log", lambda a, b: a.log()),
    ("sigmoid", lambda a, b: a.sigmoid()),
    ("", lambda a, b: a),
]


@pytest.mark.parametrize("op, f", OP_STRINGS, ids=[f"{i}:{o or 'leaf'}" for i, (o, _) in
                                                   enumerate(OP_STRINGS)])
def test_op_strings(engine, op, f):
    a, b = engine.Value(2.0), engine.Value(3.0)
    assert f(a, b)._op == op


def test_division_builds_upstreams_power_node(engine):
    a, b = engine.Value(2.0), engine.Value(4.0)
    c = a / b
    assert c._op == "*"
    (inv,) = [n for n in c._prev if n is not a]
    assert inv._op == "**-1"
    assert inv._prev == {b}


def test_hand_built_node_keeps_op_and_children(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    n = V(5.0, (a, b), "+", label="n")
    assert n._op == "+"
    assert n._prev == {a, b}
    assert n.label == "n"
    n.backward()        # no rule: like upstream's `_backward = lambda: None`
    assert (n.grad, a.grad, b.grad) == (1.0, 0.0, 0.0)


def test_hand_built_node_without_op_has_empty_op_string(engine):
    """Upstream: Value(data, (a,))._op is '' (a node with children but no op name)."""
    V = engine.Value
    a = V(2.0)
    n = V(5.0, (a,))
    assert n._prev == {a}
    assert n._op == ""


def test_prev_sets(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    assert a._prev == set()
    assert (a + b)._prev == {a, b}
    assert (a * b)._prev == {a, b}
    assert (a * a)._prev == {a}
    assert (a ** b)._prev == {a, b}
    assert (a ** 2)._prev == {a}
    for f in (V.relu, V.tanh, V.exp, V.log, V.sigmoid):
        assert f(a)._prev == {a}
    # a number operand becomes a constant leaf
    c = a + 5
    (k,) = c._prev - {a}
    assert type(k) is V and k.data == 5.0 and k._prev == set() and k._op == ""
    # a - b is a + (b * -1)
    d = a - b
    (neg,) = d._prev - {a}
    assert neg._op == "*"
    assert b in neg._prev
    assert sorted(n.data for n in neg._prev) == [-1.0, 3.0]
    # -a is a * -1
    assert sorted(n.data for n in (-a)._prev) == [-1.0, 2.0]
    assert isinstance(a._prev, set)


def test_prev_holds_the_operand_objects(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    c = a * b
    (x, y) = sorted(c._prev, key=lambda v: v.data)
    assert x is a and y is b
    x.data = 7.0
    assert a.data == 7.0


def test_label(engine):
    V = engine.Value
    a = V(1.0)
    assert a.label == ""
    a.label = "a"
    assert a.label == "a"
    b = V(2.0, label="b")
    assert b.label == "b"
    c = a * b
    assert c.label == ""
    c.label = "c"
    assert (a.label, b.label, c.label) == ("a", "b", "c")
    for bad in (3, None, 1.5, b"bytes", ["a"]):
        with pytest.raises(TypeError):
            a.label = bad
        assert a.label == "a"
    with pytest.raises(TypeError):
        V(1.0, label=5)


def test_label_survives_garbage_churn(engine):
    V = engine.Value
    labelled = []
    for i in range(200):
        v = V(float(i), label=f"v{i}")
        labelled.append(v)
        for _ in range(50):     # short-lived nodes reuse freed memory
            V(1.0) + V(2.0)
    assert [v.label for v in labelled] == [f"v{i}" for i in range(200)]
    del labelled
    fresh = [V(1.0) * 2 for _ in range(5000)]
    assert all(v.label == "" for v in fresh)
    assert all(v._op == "*" for v in fresh)


def test_repr(engine):
    V = engine.Value
    assert repr(V(2.0)) == "Value(data=2.0, grad=0.0)"
    assert repr(V(2)) == "Value(data=2.0, grad=0.0)"
    assert repr(V(-0.5)) == "Value(data=-0.5, grad=0.0)"
    a = V(3.0)
    b = a * 2
    b.backward()
    assert repr(b) == "Value(data=6.0, grad=1.0)"
    assert repr(a) == "Value(data=3.0, grad=2.0)"


def test_identity_hash_and_eq(engine):
    V = engine.Value
    a, b = V(1.0), V(1.0)
    # plain booleans (a value-comparing __eq__ returning a Value would be truthy)
    assert (a == a) is True
    assert (a != b) is True
    assert (a == b) is False
    assert hash(a) == object.__hash__(a) != hash(b)
    assert len({a, b}) == 2
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    assert V(1.0) not in d
    assert a in {a}
    assert (a == 1.0) is False
    with pytest.raises(TypeError):
        a < b


def test_data_is_always_a_float(engine):
    V = engine.Value
    for x in (3, True, np.int64(3), np.float32(0.5), np.float64(0.25), 2.5, 10**300):
        v = V(x)
        assert type(v.data) is float
        assert v.data == float(x)
        assert type(v.grad) is float and v.grad == 0.0
    assert V(3).data == 3.0
    assert type(V(0.0).relu().data) is float
    assert type(V(-3).relu().data) is float       # upstream: the int 0
    assert type((V(3) * 2).data) is float


class HasFloat:
    def __float__(self):
        return 2.5


class HasIndex:
    def __index__(self):
        return 7


@pytest.mark.parametrize("x", [np.True_, np.array(2.5), HasFloat(), HasIndex(), np.float16(0.5),
                               np.uint64(2**63), True],
                         ids=["np.bool_", "0-d array", "__float__", "__index__", "float16",
                              "uint64", "bool"])
def test_data_accepts_what_float_accepts(engine, x):
    """The compiled core converts data as float() does (PyFloat_AsDouble: __float__, then
    __index__); the twin's docstring says it mirrors that conversion. Both engines must
    accept the same inputs, in the constructor and on assignment."""
    V = engine.Value
    assert V(x).data == float(x)
    v = V(0.0)
    v.data = x
    assert v.data == float(x) and type(v.data) is float


def test_assigned_data_and_grad_stay_floats(engine):
    """README: data and grad are always floats; nn's zero_grad assigns the int 0."""
    v = engine.Value(1.0)
    v.data = 3
    v.grad = 0
    assert type(v.data) is float and type(v.grad) is float
    assert repr(v) == "Value(data=3.0, grad=0.0)"
    v.data = np.float64(2.5)
    assert type(v.data) is float


def test_readme_example(engine):
    Value = engine.Value
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"
    assert g.data == pytest.approx(24.70408163265306, abs=1e-4)
    assert a.grad == pytest.approx(138.83381924198252, abs=1e-4)
    assert b.grad == pytest.approx(645.5772594752186, abs=1e-4)


# ---------------------------------------------------------------------------------
# numpy scalars
# ---------------------------------------------------------------------------------
NUMPY_SCALARS = [np.float64(3.0), np.int64(3), np.float32(3.0)]

NUMPY_CASES = [
    # (id, f(v, x), value, d/dv) with v = 2, x = 3
    ("v+x", lambda v, x: v + x, 5.0, 1.0),
    ("x+v", lambda v, x: x + v, 5.0, 1.0),
    ("v-x", lambda v, x: v - x, -1.0, 1.0),
    ("x-v", lambda v, x: x - v, 1.0, -1.0),
    ("v*x", lambda v, x: v * x, 6.0, 3.0),
    ("x*v", lambda v, x: x * v, 6.0, 3.0),
    ("v/x", lambda v, x: v / x, 2.0 / 3.0, 1.0 / 3.0),
    ("x/v", lambda v, x: x / v, 1.5, -0.75),
    ("v**x", lambda v, x: v ** x, 8.0, 12.0),
    ("x**v", lambda v, x: x ** v, 9.0, 9.0 * math.log(3.0)),
]


@pytest.mark.parametrize("x", NUMPY_SCALARS, ids=lambda x: type(x).__name__)
@pytest.mark.parametrize("f, value, grad", [c[1:] for c in NUMPY_CASES],
                         ids=[c[0] for c in NUMPY_CASES])
def test_numpy_scalar_operands(engine, x, f, value, grad):
    v = engine.Value(2.0)
    out = f(v, x)
    assert type(out) is engine.Value, type(out)
    assert type(out.data) is float
    assert out.data == pytest.approx(value, rel=1e-15)
    out.backward()
    assert v.grad == pytest.approx(grad, rel=1e-15)


def test_demo_label_times_score_with_numpy_int64(engine):
    """The notebook's loss term `(1 + -yi*scorei).relu()` with yi from a numpy array."""
    V = engine.Value
    y = np.array([0, 1, 1, 0]) * 2 - 1
    assert y.dtype == np.int64
    scores = [V(0.25), V(-0.5), V(2.0), V(-3.0)]
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores)]
    assert all(type(l) is V for l in losses)
    assert [l.data for l in losses] == [1.25, 1.5, 0.0, 0.0]
    total = sum(losses) * (1.0 / len(losses))
    assert type(total) is V
    total.backward()
    assert [s.grad for s in scores] == [0.25, -0.25, 0.0, 0.0]
    accuracy = [(yi > 0) == (s.data > 0) for yi, s in zip(y, scores)]
    assert sum(accuracy) == 2


def test_numpy_array_operand_on_either_side(engine):
    """A float defers to numpy for an array operand (2.0 * arr is arr * 2.0); so should a
    Value: arr * v gives an object array of Values, and v * arr should give the same
    instead of raising TypeError from converting the array to one double."""
    V = engine.Value
    arr = np.array([1.0, 2.0])
    v = V(2.0)
    right = arr * v
    assert [x.data for x in right] == [2.0, 4.0]
    left = v * arr
    assert [x.data for x in left] == [2.0, 4.0]
    assert [x.data for x in v + arr] == [3.0, 4.0]


def test_inputs_from_numpy_rows(engine):
    V = engine.Value
    X = np.array([[0.5, -1.5], [2.0, 0.25]])
    inputs = [list(map(V, row)) for row in X]
    out = sum(inputs[0][0] * inputs[1][0] + xi * 2 for xi in inputs[1])
    assert type(out.data) is float
    assert out.data == pytest.approx(0.5 * 2.0 * 2 + (2.0 + 0.25) * 2, rel=1e-15)

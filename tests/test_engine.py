"""The Value node on both engines: values, gradients, upstream's attributes and semantics."""
import copy
import inspect
import json
import math
import os
import pickle
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from micrograd import _engine, _pure
import micrograd.engine

from conftest import lecture_graph, run_upstream, walk


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
    """Upstream: Value(data, (a,))._op is ''. Here it raised KeyError (op code CUSTOM
    has no entry in _OP_NAMES)."""
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
    assert a == a
    assert a != b
    assert not (a == b)
    assert hash(a) == hash(a)
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


# ---------------------------------------------------------------------------------
# Manual _backward() stepping: Karpathy's lecture
# ---------------------------------------------------------------------------------
def test_lecture_manual_backward(engine):
    a, b, c, d, e, f, L = lecture_graph(engine.Value)
    assert (e.data, d.data, L.data) == (-6.0, 4.0, -8.0)
    assert (L._op, d._op, e._op) == ("*", "+", "*")
    assert L._prev == {d, f} and d._prev == {e, c} and e._prev == {a, b}

    L.grad = 1.0
    L._backward()
    assert (d.grad, f.grad) == (-2.0, 4.0)
    assert (c.grad, e.grad, a.grad) == (0.0, 0.0, 0.0)
    d._backward()
    assert (c.grad, e.grad) == (-2.0, -2.0)
    e._backward()
    assert (a.grad, b.grad) == (6.0, -4.0)
    for leaf in (a, b, c, f):
        leaf._backward()        # no rule
    assert (a.grad, b.grad, c.grad, f.grad) == (6.0, -4.0, -2.0, 4.0)
    assert [v.label for v in (a, b, c, d, e, f, L)] == list("abcdefL")


def test_lecture_tanh_neuron_manual_backward(engine):
    V = engine.Value
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x2w2 = x2 * w2
    x1w1x2w2 = x1w1 + x2w2
    n = x1w1x2w2 + b
    o = n.tanh()
    assert o._op == "tanh" and o._prev == {n}
    assert o.data == pytest.approx(math.sqrt(0.5), rel=1e-12)
    o.grad = 1.0
    o._backward()
    assert n.grad == pytest.approx(0.5, rel=1e-12)
    n._backward()
    assert b.grad == n.grad and x1w1x2w2.grad == n.grad
    x1w1x2w2._backward()
    assert x1w1.grad == n.grad and x2w2.grad == n.grad
    x2w2._backward()
    x1w1._backward()
    assert x2.grad == pytest.approx(0.5, rel=1e-12)
    assert w2.grad == 0.0
    assert x1.grad == pytest.approx(-1.5, rel=1e-12)
    assert w1.grad == pytest.approx(1.0, rel=1e-12)

    # backward() gives the same
    grads = [v.grad for v in (x1, x2, w1, w2, b)]
    for v in (x1, x2, w1, w2, b, x1w1, x2w2, x1w1x2w2, n, o):
        v.grad = 0.0
    o.backward()
    assert [v.grad for v in (x1, x2, w1, w2, b)] == grads


def test_manual_backward_accumulates(engine):
    V = engine.Value
    a, b = V(2.0), V(5.0)
    c = a * b
    c.grad = 1.0
    c._backward()
    c._backward()
    assert (a.grad, b.grad) == (10.0, 4.0)


# ---------------------------------------------------------------------------------
# backward() accumulates exactly as upstream
# ---------------------------------------------------------------------------------
def test_backward_twice_accumulates(engine):
    a, b, c, d, e, f, L = lecture_graph(engine.Value)
    L.backward()
    first = [v.grad for v in (a, b, c, d, e, f, L)]
    assert first == [6.0, -4.0, -2.0, -2.0, -2.0, 4.0, 1.0]
    L.backward()
    # upstream: the root's grad is SET to 1, every other grad accumulates again, and the
    # intermediate nodes' doubled grads flow into the leaves
    assert [v.grad for v in (a, b, c, d, e, f, L)] == [24.0, -16.0, -6.0, -4.0, -6.0, 8.0, 1.0]


def test_root_grad_is_set_not_accumulated(engine):
    V = engine.Value
    x = V(3.0)
    y = x * x
    y.grad = 7.0
    x.grad = 0.5
    y.backward()
    assert y.grad == 1.0
    assert x.grad == 0.5 + 6.0


def test_backward_shared_subgraph_counts_every_path(engine):
    V = engine.Value
    x = V(1.5)
    h = x * x           # used three times
    out = h * h + h
    out.backward()
    # out = x**4 + x**2
    assert x.grad == pytest.approx(4 * 1.5 ** 3 + 2 * 1.5, rel=1e-15)
    assert h.grad == pytest.approx(2 * h.data + 1, rel=1e-15)


ACCUMULATION_SCRIPT = r'''
import json
from micrograd.engine import Value
a, b, c, f = Value(2.0), Value(-3.0), Value(10.0), Value(-2.0)
e = a * b
d = e + c
L = d * f
x = Value(-1.25)
y = (x * x + x * 3) * x + 1
z = y.relu() * x + (x + 2) * y
L.backward()
rounds = [[v.grad for v in (a, b, c, d, e, f, L)]]
L.backward()
rounds.append([v.grad for v in (a, b, c, d, e, f, L)])
L.grad = 5.0
e.grad = 0.5
L.backward()
rounds.append([v.grad for v in (a, b, c, d, e, f, L)])
z.backward()
z.backward()
rounds.append([v.grad for v in (x, y, z)])
print(json.dumps(rounds))
'''


def test_backward_accumulation_matches_upstream(engine, upstream_path):
    theirs = json.loads(run_upstream(upstream_path, ACCUMULATION_SCRIPT))
    ns = {}
    src = ACCUMULATION_SCRIPT.replace("from micrograd.engine import Value", "")
    ns["Value"] = engine.Value
    ns["print"] = lambda s: ns.__setitem__("out", s)
    exec(src, ns)
    ours = json.loads(ns["out"])
    assert ours == theirs


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


# ---------------------------------------------------------------------------------
# pickle and deepcopy
# ---------------------------------------------------------------------------------
ROUND_TRIPS = [("pickle", lambda v: pickle.loads(pickle.dumps(v))),
               ("pickle0", lambda v: pickle.loads(pickle.dumps(v, protocol=0))),
               ("deepcopy", copy.deepcopy)]


@pytest.mark.parametrize("roundtrip", [r[1] for r in ROUND_TRIPS], ids=[r[0] for r in ROUND_TRIPS])
def test_single_value_round_trip(engine, roundtrip):
    V = engine.Value
    v = V(2.5, label="v")
    v.grad = -1.25
    w = roundtrip(v)
    assert type(w) is V and w is not v
    assert (w.data, w.grad, w.label, w._op, w._prev) == (2.5, -1.25, "v", "", set())
    w.data = 9.0
    w.label = "w"
    assert (v.data, v.label) == (2.5, "v")
    for op, node in (("**2", V(3.0) ** 2), ("**0.5", V(3.0) ** 0.5), ("**-1", V(3.0) ** -1)):
        copied = roundtrip(node)
        assert copied._op == op and copied.data == node.data


@pytest.mark.parametrize("roundtrip", [r[1] for r in ROUND_TRIPS], ids=[r[0] for r in ROUND_TRIPS])
def test_graph_round_trip_keeps_sharing(engine, roundtrip):
    V = engine.Value
    a, b = V(2.0, label="a"), V(-3.0, label="b")
    c = a * b
    c.label = "c"
    d = c + a
    e = d * c          # c reached from e directly and through d; a through c and d
    e2 = roundtrip(e)
    assert e2.data == e.data == 24.0
    (d2,) = [n for n in e2._prev if n._op == "+"]
    (c2,) = [n for n in e2._prev if n._op == "*"]
    (c2_via_d,) = [n for n in d2._prev if n._op == "*"]
    assert c2_via_d is c2
    (a2_via_d,) = [n for n in d2._prev if n._op == ""]
    (a2_via_c,) = [n for n in c2._prev if n.label == "a"]
    assert a2_via_d is a2_via_c
    assert c2.label == "c" and a2_via_c.label == "a"
    assert a2_via_c is not a
    (b2,) = [n for n in c2._prev if n.label == "b"]
    e.backward()
    e2.backward()
    assert (a2_via_c.grad, b2.grad, c2.grad, d2.grad) == (a.grad, b.grad, c.grad, d.grad)
    # e = (ab + a) * ab: de/da = b(ab + a) + (b + 1)ab, de/db = a(ab + a) + a*ab
    assert a.grad == (-3.0) * (-4.0) + (-2.0) * (-6.0)
    assert b.grad == 2.0 * (-4.0) + 2.0 * (-6.0)
    # the copy is independent of the original
    a2_via_c.data = 100.0
    assert a.data == 2.0


def test_hand_built_node_round_trip(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    n = V(5.0, (a, b), "custom", label="n")
    for roundtrip in (lambda v: pickle.loads(pickle.dumps(v)), copy.deepcopy):
        m = roundtrip(n)
        assert (m.data, m._op, m.label) == (5.0, "custom", "n")
        assert sorted(x.data for x in m._prev) == [2.0, 3.0]


def test_value_power_round_trip(engine):
    V = engine.Value
    a, b = V(2.0, label="a"), V(3.0, label="b")
    c = a ** b + 2 ** a
    c2 = pickle.loads(pickle.dumps(c))
    c.backward()
    c2.backward()
    leaves = sorted((n for n in walk(c2) if not n._prev), key=lambda v: (v.data, v.label))
    assert [(v.data, v.label) for v in leaves] == [(2.0, ""), (2.0, "a"), (3.0, "b")]
    assert c2.data == c.data == 12.0
    assert leaves[1].grad == a.grad == pytest.approx(12 + 4 * math.log(2), rel=1e-15)
    assert leaves[2].grad == b.grad == pytest.approx(8 * math.log(2), rel=1e-15)
    assert leaves[0].grad == 4.0     # the constant base of 2 ** a


MODEL_PICKLE_SCRIPT = r'''
import copy, pickle, random, sys
from micrograd.engine import BACKEND, Value
from micrograd.nn import MLP
random.seed(7)
model = MLP(3, [4, 4, 1])
x = [1.0, -2.0, 0.5]
out = model(x).data
for name, clone in (("pickle", pickle.loads(pickle.dumps(model))), ("deepcopy", copy.deepcopy(model))):
    assert repr(clone) == repr(model), name
    assert [p.data for p in clone.parameters()] == [p.data for p in model.parameters()], name
    assert not set(map(id, clone.parameters())) & set(map(id, model.parameters())), name
    assert all(type(p) is Value for p in clone.parameters()), name
    assert clone(x).data == out, name
    loss = clone(x) * 2
    loss.backward()
    assert all(p.grad == 0 for p in model.parameters()), name
    assert any(p.grad != 0 for p in clone.parameters()), name
print(BACKEND)
'''


def test_whole_model_round_trip(engine):
    name = "cython" if engine is _engine else "python"
    env = dict(os.environ, MICROGRAD_PURE_PYTHON="1" if name == "python" else "0")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", MODEL_PICKLE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name


def test_model_deepcopy_in_process(nn):
    random.seed(3)
    model = nn.MLP(2, [3, 1])
    clone = copy.deepcopy(model)
    x = [0.5, -1.0]
    assert clone(x).data == model(x).data
    assert [p.data for p in clone.parameters()] == [p.data for p in model.parameters()]
    clone.parameters()[0].data += 1.0
    assert model.parameters()[0].data == clone.parameters()[0].data - 1.0


# ---------------------------------------------------------------------------------
# The two engines agree on random expression graphs
# ---------------------------------------------------------------------------------
UNARY = ["neg", "relu", "tanh", "exp", "log", "sigmoid", "powc", "rpow",
         "cadd", "radd", "csub", "rsub", "cmul", "rmul", "cdiv", "rdiv"]
BINARY = ["add", "sub", "mul", "div", "pow"]
CONSTS = [2, 3, -1, 0.5, 1.5, -2, 0.25, 2.5, -0.5, 1]

instruction = st.tuples(st.sampled_from(UNARY + BINARY), st.integers(0, 6), st.integers(0, 6),
                        st.sampled_from(CONSTS))
program = st.tuples(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=4),
                    st.lists(instruction, min_size=1, max_size=30))


def apply(op, a, b, c):
    if op == "neg":
        return -a
    if op in ("relu", "tanh", "exp", "log", "sigmoid"):
        return getattr(a, op)()
    if op == "powc":
        return a ** c
    if op == "rpow":
        return abs(c) ** a
    if op == "cadd":
        return a + c
    if op == "radd":
        return c + a
    if op == "csub":
        return a - c
    if op == "rsub":
        return c - a
    if op == "cmul":
        return a * c
    if op == "rmul":
        return c * a
    if op == "cdiv":
        return a / c
    if op == "rdiv":
        return c / a
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "pow":
        return a ** b
    raise AssertionError(op)


DOMAIN_ERRORS = (ZeroDivisionError, ValueError, OverflowError)


def run_program(V, prog):
    """Build, then backward. Returns ('ok', datas, grads) or ('error', stage, step, type)."""
    xs, instrs = prog
    pool = [V(x) for x in xs]
    for step, (op, i, j, c) in enumerate(instrs):
        a = pool[-1 - i % len(pool)]
        b = pool[-1 - j % len(pool)]
        try:
            pool.append(apply(op, a, b, c))
        except DOMAIN_ERRORS as exc:
            return ("error", "forward", step, type(exc))
    root = pool[-1]
    try:
        root.backward()
    except DOMAIN_ERRORS as exc:
        assert all(v.grad == 0.0 for v in pool)      # checked before any grad changed
        return ("error", "backward", None, type(exc))
    return ("ok", [v.data for v in pool], [v.grad for v in pool])


def same_float(x, y, rel=1e-12):
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-300)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(program)
def test_engines_agree_on_random_graphs(prog):
    ours = run_program(_engine.Value, prog)
    twin = run_program(_pure.Value, prog)
    assert ours[0] == twin[0], (ours, twin)
    if ours[0] == "error":
        assert ours == twin
        return
    for x, y in zip(ours[1] + ours[2], twin[1] + twin[2]):
        assert same_float(x, y), (ours, twin)


# ---------------------------------------------------------------------------------
# Against PyTorch (float64)
# ---------------------------------------------------------------------------------
def torch_apply(torch, op, a, b, c):
    # the same graph shapes as the engine: a - b is a + b * -1, a / b is a * b ** -1
    if op == "neg":
        return a * -1.0
    if op == "relu":
        return torch.relu(a)
    if op == "tanh":
        return torch.tanh(a)
    if op == "exp":
        return torch.exp(a)
    if op == "log":
        return torch.log(a)
    if op == "sigmoid":
        return torch.sigmoid(a)
    if op == "powc":
        return a ** c
    if op == "rpow":
        return torch.tensor(float(abs(c)), dtype=torch.float64) ** a
    if op in ("cadd", "radd"):
        return a + c
    if op == "csub":
        return a + (-c)
    if op == "rsub":
        return c + a * -1.0
    if op in ("cmul", "rmul"):
        return a * c
    if op == "cdiv":
        return a * (c ** -1.0)
    if op == "rdiv":
        return a ** -1 * c
    if op == "add":
        return a + b
    if op == "sub":
        return a + b * -1.0
    if op == "mul":
        return a * b
    if op == "div":
        return a * b ** -1
    if op == "pow":
        return a ** b
    raise AssertionError(op)


def close_to_torch(x, y, scale):
    if math.isnan(x) or math.isnan(y):
        return False
    return abs(x - y) <= 1e-9 * max(abs(y), 1.0) + 1e-12 * scale


@pytest.mark.parametrize("eng", ["cython", "python"])
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(prog=program)
def test_random_graphs_match_torch(eng, prog):
    torch = pytest.importorskip("torch")
    V = (_engine if eng == "cython" else _pure).Value
    ours = run_program(V, prog)
    assume(ours[0] == "ok")
    datas, grads = ours[1], ours[2]
    assume(all(math.isfinite(x) and abs(x) < 1e6 for x in datas + grads))
    xs, instrs = prog
    pool = [torch.tensor(float(x), dtype=torch.float64, requires_grad=True) for x in xs]
    for op, i, j, c in instrs:
        a = pool[-1 - i % len(pool)]
        b = pool[-1 - j % len(pool)]
        t = torch_apply(torch, op, a, b, c)
        t.retain_grad()
        pool.append(t)
    root = pool[-1]
    root.backward()
    scale = max(abs(x) for x in datas + grads)
    for k, t in enumerate(pool):
        assert close_to_torch(datas[k], t.item(), scale), (k, datas[k], t.item())
        tg = 0.0 if t.grad is None else t.grad.item()
        if math.isnan(tg):
            continue            # torch's nan where only a leaf-less path exists (e.g. 0**b)
        assert close_to_torch(grads[k], tg, scale), (k, grads[k], tg)


def test_torch_fixed_graph(engine):
    torch = pytest.importorskip("torch")
    V = engine.Value
    vals = (0.7, -1.3, 2.1)
    a, b, c = map(V, vals)
    out = ((a * b).tanh() + (c ** 2).log() * a.sigmoid() - (b / c).exp() + (a - c).relu()
           + c ** b + 2 ** a)
    out.backward()
    ta, tb, tc = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in vals)
    tout = (torch.tanh(ta * tb) + torch.log(tc ** 2) * torch.sigmoid(ta) - torch.exp(tb / tc)
            + torch.relu(ta - tc) + tc ** tb + 2 ** ta)
    tout.backward()
    assert out.data == pytest.approx(tout.item(), rel=1e-12)
    for v, t in ((a, ta), (b, tb), (c, tc)):
        assert v.grad == pytest.approx(t.grad.item(), rel=1e-10)


# ---------------------------------------------------------------------------------
# Which backend is active
# ---------------------------------------------------------------------------------
def test_compiled_backend_is_really_compiled():
    if micrograd.engine.BACKEND != "cython":
        pytest.skip("the compiled core is not the active backend "
                    f"(BACKEND={micrograd.engine.BACKEND!r})")
    Value = micrograd.engine.Value
    assert Value is _engine.Value
    assert micrograd.engine.Tape is _engine.Tape
    assert micrograd.Value is _engine.Value
    module_file = sys.modules[Value.__module__].__file__
    assert module_file.endswith((".so", ".pyd")), module_file
    assert inspect.getfile(Value) == module_file
    assert not inspect.getfile(Value).endswith(".py")
    assert type(Value).__name__ == "type"
    assert not hasattr(Value(1.0), "__dict__")
    assert not inspect.isfunction(Value.__init__)
    assert not inspect.isfunction(Value.backward)
    with pytest.raises(AttributeError):
        Value(1.0).anything = 1
    with pytest.raises((TypeError, OSError)):
        inspect.getsource(Value)       # no Python source behind it


def test_pure_twin_is_a_python_class():
    Value = _pure.Value
    assert inspect.getfile(Value).endswith("_pure.py")
    assert inspect.isfunction(Value.backward)


@pytest.mark.parametrize("setting, backend", [("1", "python"), ("0", "cython"), ("", "cython")])
def test_environment_selects_backend(setting, backend):
    env = dict(os.environ, MICROGRAD_PURE_PYTHON=setting)
    env.pop("PYTHONPATH", None)
    code = ("import micrograd.engine as e, micrograd\n"
            "print(e.BACKEND, e.Value.__module__, micrograd.BACKEND)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    module = "micrograd._pure" if backend == "python" else "micrograd._engine"
    assert proc.stdout.split() == [backend, module, backend]


def test_missing_compiled_core_falls_back_to_the_twin_with_a_warning():
    code = ("import sys, warnings\n"
            "sys.modules['micrograd._engine'] = None   # as if the extension were not built\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import micrograd.engine as e\n"
            "print(e.BACKEND, e.Value.__module__,\n"
            "      any(issubclass(w.category, RuntimeWarning) for w in caught))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MICROGRAD_PURE_PYTHON")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["python", "micrograd._pure", "True"]

"""pickle and deepcopy of Values, graphs and whole models on both cores."""
import copy
import math
import pickle
import random
import subprocess
import sys

import pytest

from conftest import engine_name, subprocess_env, walk


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
    # in a fresh interpreter, through micrograd.engine and micrograd.nn as a user imports them
    name = engine_name(engine)
    env = subprocess_env(MICROGRAD_PURE_PYTHON="1" if name == "python" else "0")
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


def deep_graph(V, n):
    """A chain n ops deep whose every step also reads the first leaf, plus a node held
    from its middle: (root, middle, x)."""
    x = V(0.5, label="x")
    h, middle = x, None
    for i in range(n):
        h = h * 1.0000001 + x
        if i == n // 2:
            middle = h
    return h * 2 + h, middle, x


def check_deep_round_trip(engine, n):
    root, middle, x = deep_graph(engine.Value, n)
    root.backward()
    for clone in (lambda obj: pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)),
                  copy.deepcopy):
        r, m, x2 = clone([root, middle, x])
        assert (r.data, r.grad, r._op) == (root.data, root.grad, root._op)
        assert (m.data, m.grad, x2.grad, x2.label) == (middle.data, middle.grad, x.grad, "x")
        # shared nodes stay shared: walk down from the clone's root to its copy of middle
        node, seen_middle, seen_x = r, False, 0
        stack, seen = [r], set()
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            seen_middle |= node is m
            seen_x += node is x2
            stack.extend(node._prev)
        assert seen_middle and seen_x == 1
        assert len(seen) == 3 * n + 4       # every node once: x, per step a constant, a
                                            # product and a sum, then 2, h*2 and the root


def test_deep_graphs_pickle_and_deepcopy_without_recursion(engine):
    check_deep_round_trip(engine, 20_000 if engine.__name__ == "micrograd._engine" else 3_000)


@pytest.mark.slow
def test_a_million_deep_graph_pickles_and_deepcopies(engine):
    check_deep_round_trip(engine, 1_000_000 if engine.__name__ == "micrograd._engine" else 100_000)


TEN_MILLION = '''
import copy, pickle, resource
from micrograd._engine import Value
x = Value(0.5, label="x")
h = x
for i in range(3_333_332):          # three nodes a step: with x, 2, h*2 and the root, 10M
    h = h * 1.0000001 + x
root = h * 2 + h
root.backward()
for clone in (lambda v: pickle.loads(pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)),
              copy.deepcopy):
    r = clone(root)
    assert (r.data, r.grad, r._op) == (root.data, root.grad, root._op)
    leaf = r
    while leaf._prev:
        leaf = max(leaf._prev, key=lambda v: (len(v._prev), v.label))   # down the spine
    assert (leaf.label, leaf.grad) == ("x", x.grad)
    del r, leaf
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 10_000_000)
'''


@pytest.mark.slow
@pytest.mark.memory
def test_a_ten_million_node_chain_pickles_and_deepcopies_in_bounded_memory_compiled():
    """Pickle, unpickle and deepcopy walk the graph without recursion, and their memory
    is linear: the peak is ~400 bytes a node (the graph and its copy 112, the pickle's
    bytes 45, the pickler's and deepcopy's memos most of the rest); 512 allows for noise."""
    proc = subprocess.run([sys.executable, "-c", TEN_MILLION], capture_output=True, text=True,
                          env=subprocess_env(), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout) < 512, proc.stdout

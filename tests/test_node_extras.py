"""Attributes on Values, Tapes over Python rules, and the cycles _backward closures make.

The rest of the open node (ops from outside the class, _backward order, subclasses) is
in test_open_node.py, whose helpers these tests share.
"""
import gc
import math
import sys
import pytest

from test_open_node import (  # noqa: E402  (tests/ is on sys.path under pytest)
    LECTURE_OPS, VALUE_EXT, Probe, assert_same_numbers, run_here, run_in_subprocess,
    run_under_upstream)

# ---------------------------------------------------------------------------------
# 4. Attributes on a Value: optimizer state, freed with the node
# ---------------------------------------------------------------------------------
ADAMW = '''
import math, random

class AdamW:
    def __init__(self, params, lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.t = 0
        for p in self.params:
            p.m = 0.0
            p.v = 0.0

    def zero_grad(self):
        for p in self.params:
            p.grad = 0.0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for p in self.params:
            p.m = b1 * p.m + (1 - b1) * p.grad
            p.v = b2 * p.v + (1 - b2) * p.grad ** 2
            m_hat = p.m / (1 - b1 ** self.t)
            v_hat = p.v / (1 - b2 ** self.t)
            p.data -= self.lr * (m_hat / (math.sqrt(v_hat) + self.eps) + self.wd * p.data)

def train(steps=6):
    random.seed(42)
    model = MLP(3, [4, 4, 1])
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    opt = AdamW(model.parameters())
    losses = []
    for k in range(steps):
        preds = [model(x) for x in xs]
        loss = sum((yp - yt) ** 2 for yt, yp in zip(ys, preds))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.data)
    ps = model.parameters()
    return {"losses": losses, "data": [p.data for p in ps],
            "m": [p.m for p in ps], "v": [p.v for p in ps]}
'''


def test_adamw_with_state_on_parameters_matches_upstream(engine, nn, upstream_path):
    ours = run_here(ADAMW, engine.Value, MLP=nn.MLP)["train"]()
    theirs = run_under_upstream(upstream_path, "from micrograd.nn import MLP\n" + ADAMW,
                                "train()")
    assert_same_numbers(ours, theirs, rel=1e-10)
    assert ours["losses"][-1] < ours["losses"][0]
    assert any(m != 0.0 for m in ours["m"])


def test_arbitrary_attributes_set_read_delete(engine):
    V = engine.Value
    p = V(1.0)
    p.m = 0.0
    p.state = {"step": 3}
    p.m += 0.5
    assert (p.m, p.state) == (0.5, {"step": 3})
    assert getattr(p, "missing", "default") == "default" and not hasattr(p, "missing")
    # CPython's own message; the compiled class's name carries its module
    with pytest.raises(AttributeError, match=r"^'(micrograd\._engine\.)?Value' object has no attribute 'missing'$"):
        p.missing
    del p.m
    with pytest.raises(AttributeError, match="^'Value' object has no attribute 'm'$"):
        p.m
    # CPython 3.9's message for a name missing from an instance __dict__ is the bare name
    with pytest.raises(AttributeError, match=r"^('Value' object has no attribute 'm'|m)$"):
        del p.m
    # the class's own attributes keep their meaning
    p.data = 3
    assert p.data == 3.0 and type(p.data) is float
    # on an op node, and through a graph
    q = p * p
    q.tag = "square"
    q.backward()
    assert q.tag == "square" and p.grad == 6.0


def test_attributes_are_freed_with_the_node(engine):
    V = engine.Value
    freed = []
    p = V(1.0)
    p.m = Probe("m", freed)
    q = p * 2.0
    q.note = Probe("note", freed)
    del q
    assert freed == ["note"]
    del p
    assert freed == ["note", "m"]
    # a new node (perhaps at the same address) starts with no attributes
    for _ in range(100):
        r = V(2.0)
        assert not hasattr(r, "m") and not hasattr(r, "note")


def test_plain_value_keeps_its_size():
    from micrograd import _engine
    assert _engine.Value.__basicsize__ == 56
    v = _engine.Value(1.0)
    before = sys.getsizeof(v)
    v.m, v.v = 0.0, 0.0
    assert sys.getsizeof(v) == before == 56
    assert not hasattr(v, "__dict__")


# the compiled core's runs take ~3 s; the twin's are pure Python: slow
RSS_ENGINES = pytest.mark.parametrize(
    "engine", ["cython", pytest.param("python", marks=pytest.mark.slow)], indirect=True)


# A subprocess script's end: RSS growth over 200k more rounds of its loop(n), after
# 200k rounds of warm-up (allocator pools, the side table's size)
MEASURE_RSS = '''
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
gc.collect()
loop(200_000)                   # warm-up: allocator pools, the side table's size
gc.collect()
before = rss()
loop(200_000)
gc.collect()
print(rss() - before)
'''


ATTR_RSS = '''
import gc
Value = E.Value
def loop(n):
    for i in range(n):
        p = Value(float(i))
        p.m = [0.0] * 8
        p.v = float(i)
        q = p * p
        q.seen = (p, i)
''' + MEASURE_RSS


@pytest.mark.memory
@RSS_ENGINES
def test_attributes_do_not_leak_rss(engine):
    growth = float(run_in_subprocess(engine, ATTR_RSS))
    assert growth < 4.0, f"RSS grew {growth:.1f} MiB over 200k nodes with attributes"


# ---------------------------------------------------------------------------------
# 5. A Tape over graphs with custom nodes
# ---------------------------------------------------------------------------------
def test_tape_refuses_a_graph_with_a_python_backward_naming_the_op(engine):
    ns = run_here(LECTURE_OPS, engine.Value)
    x = engine.Value(0.3)
    y = ns["tanh"](x * 2.0) + x
    with pytest.raises(TypeError, match="'tanh'"):
        engine.Tape(y)
    # also a built-in op node whose rule was replaced
    z = x * x
    z._backward = lambda: None
    w = z + 1.0
    with pytest.raises(TypeError, match=r"'\*'"):
        engine.Tape(w)
    del z._backward                      # its rule restored: recordable again
    t = engine.Tape(w)
    assert t.forward() == 1.09


def test_tape_refuses_a_subclass_graph(engine):
    ns = run_here(VALUE_EXT, engine.Value)
    a = ns["ValueExt"](0.5)
    with pytest.raises(TypeError, match="'sigmoid'"):
        engine.Tape(a.sigmoid() * engine.Value(2.0))


def test_tape_records_hand_built_custom_nodes_without_backward(engine):
    V = engine.Value

    def graph():
        a, b = V(1.5), V(-2.0)
        c = V(4.0, (a, b), "mystery")     # no _backward: like upstream's lambda: None
        d = c * a + b * b + c.relu()
        return a, b, c, d

    a, b, c, d = graph()
    t = engine.Tape(d)
    assert t.forward() == d.data == 4.0 * 1.5 + 4.0 + 4.0
    t.backward()
    a2, b2, c2, d2 = graph()
    d2.backward()
    assert (a.grad, b.grad, c.grad) == (a2.grad, b2.grad, c2.grad) == (4.0, -4.0, 2.5)


# ---------------------------------------------------------------------------------
# 6. The out -> _backward -> cell -> out cycle
# ---------------------------------------------------------------------------------
CYCLE_RSS = '''
import gc
Value = E.Value
''' + LECTURE_OPS + '''
def loop(n):
    for i in range(n // 2):
        x = Value(0.001 * i)
        y = tanh(sin(x) * x)      # two custom nodes per round
        if i % 64 == 0:
            y.backward()
''' + MEASURE_RSS


@pytest.mark.memory
@RSS_ENGINES
def test_custom_node_cycles_do_not_leak_rss(engine):
    growth = float(run_in_subprocess(engine, CYCLE_RSS))
    assert growth < 4.0, f"RSS grew {growth:.1f} MiB over 200k custom nodes"


def lecture_sin(Value):
    def sin(v):
        out = Value(math.sin(v.data), (v,), 'sin')

        def _backward():
            v.grad += math.cos(v.data) * out.grad
        out._backward = _backward
        return out
    return sin


def test_dropped_custom_node_is_freed_by_one_collection(engine):
    sin = lecture_sin(engine.Value)
    freed = []
    x = engine.Value(0.2)
    y = sin(x)
    y.probe = Probe("y", freed)
    y.backward()
    del y
    gc.collect()
    assert freed == ["y"]
    assert x.grad == math.cos(0.2)


@pytest.mark.parametrize("kind", ["ops", "subclass"])
def test_dropped_chain_of_custom_nodes_is_freed_by_one_collection(engine, kind):
    """A graph of lecture-style nodes several levels deep, dropped at once: one
    gc.collect() frees all of it (as it does upstream), not one level per collection."""
    if kind == "ops":
        step = lecture_sin(engine.Value)
        x = engine.Value(0.1)
    else:
        ValueExt = run_here(VALUE_EXT, engine.Value)["ValueExt"]
        step = ValueExt.sigmoid
        x = ValueExt(0.1)
    freed = []
    y = x
    for i in range(20):
        y = step(y)
        y.probe = Probe(i, freed)
    y.backward()
    del x, y
    gc.collect()
    assert sorted(freed) == list(range(20)), f"{len(freed)} of 20 freed"


def test_breaking_the_cycle_by_hand_frees_the_node_at_once(engine):
    """A closure that reaches its node through a list (not a closure cell of its own)
    is not a cycle the core can see; dropping the function frees the node."""
    V = engine.Value
    freed = []
    for how in ("none", "del"):
        x = V(1.0)
        out = V(2.0, (x,), "boxed")
        box = [out]

        def _backward():
            x.grad += 2.0 * box[0].grad
        out._backward = _backward
        out.probe = Probe(how, freed)
        out.backward()
        assert x.grad == 2.0
        if how == "none":
            out._backward = None
        else:
            del out._backward
        del out, box, _backward
        assert freed[-1:] == [how]

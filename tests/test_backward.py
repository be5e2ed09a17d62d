"""backward() and _backward() on both cores: Karpathy's lecture stepped by hand,
accumulation exactly as upstream, and random graphs against the other core and PyTorch."""
import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import lecture_graph, run_upstream


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


def agreement_test(max_examples):
    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(prog=program)
    def test(both_engines, prog):
        ours = run_program(both_engines.compiled.Value, prog)
        twin = run_program(both_engines.twin.Value, prog)
        assert ours[0] == twin[0], (ours, twin)
        if ours[0] == "error":
            assert ours == twin
            return
        for x, y in zip(ours[1] + ours[2], twin[1] + twin[2]):
            assert same_float(x, y), (ours, twin)
    return test


test_engines_agree_on_random_graphs = agreement_test(100)
test_engines_agree_on_random_graphs_at_length = pytest.mark.slow(agreement_test(500))


# ---------------------------------------------------------------------------------
# Against PyTorch (float64)
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    # Asked for before hypothesis starts drawing examples, so a missing torch is one skip.
    return pytest.importorskip("torch", reason="torch is not installed (optional: the "
                               "float64 cross-checks)")


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


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(prog=program)
def test_random_graphs_match_torch(engine, torch, prog):
    ours = run_program(engine.Value, prog)
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


def test_torch_fixed_graph(engine, torch):
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

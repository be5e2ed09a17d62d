"""The open node: what public micrograd programs do to a Value.

Ops written outside the class as the lecture teaches (`out._backward = _backward`),
subclasses of Value with their own closure-based ops, upstream's whole engine.py pasted
as a subclass, per-parameter optimizer state kept as attributes, a Tape over such graphs,
and the node <-> closure cycle those programs make. Both cores, through the `engine`
fixture; numbers are compared with upstream micrograd 0.1.0 run in a subprocess.
"""
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import run_upstream, subprocess_env



def close(a, b, rel=1e-12):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def assert_same_numbers(ours, theirs, rel=1e-12, path="result"):
    """ours and theirs (JSON-shaped) equal, floats to rel."""
    if isinstance(theirs, dict):
        assert sorted(ours) == sorted(theirs), path
        for k in theirs:
            assert_same_numbers(ours[k], theirs[k], rel, f"{path}[{k!r}]")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_numbers(a, b, rel, f"{path}[{i}]")
    elif isinstance(theirs, float) or isinstance(ours, float):
        assert close(float(ours), float(theirs), rel), (path, ours, theirs)
    else:
        assert ours == theirs, (path, ours, theirs)


def run_here(source, Value, **names):
    """exec source with Value (and names) as its globals; return the namespace."""
    ns = {"Value": Value, "__name__": "open_node_program"}
    ns.update(names)
    exec(compile(source, "<open-node program>", "exec"), ns)
    return ns


def run_under_upstream(upstream_path, source, call):
    code = "import json\nfrom micrograd.engine import Value\n" + source + \
        f"\nprint(json.dumps({call}))\n"
    return json.loads(run_upstream(upstream_path, code))


def run_in_subprocess(engine, code, timeout=600):
    """Run code with this package importable and `E` the engine module; its stdout."""
    prelude = f"import micrograd.{engine.__name__.split('.')[-1]} as E\n"
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class Probe:
    """Appends its name to a list when it is freed."""

    def __init__(self, name, freed):
        self.name, self.freed = name, freed

    def __del__(self):
        self.freed.append(self.name)


# ---------------------------------------------------------------------------------
# 1. Ops from outside the class, as the lecture adds them
# ---------------------------------------------------------------------------------
LECTURE_OPS = '''
import math, random

def sin(v):
    out = Value(math.sin(v.data), (v,), 'sin')
    def _backward():
        v.grad += math.cos(v.data) * out.grad
    out._backward = _backward
    return out

def cos(v):
    out = Value(math.cos(v.data), (v,), 'cos')
    def _backward():
        v.grad += -math.sin(v.data) * out.grad
    out._backward = _backward
    return out

def exp(v):
    out = Value(math.exp(v.data), (v,), 'exp')
    def _backward():
        v.grad += out.data * out.grad
    out._backward = _backward
    return out

def tanh(v):
    x = v.data
    t = (math.exp(2*x) - 1) / (math.exp(2*x) + 1)
    out = Value(t, (v,), 'tanh')
    def _backward():
        v.grad += (1 - t**2) * out.grad
    out._backward = _backward
    return out

def hypot(a, b):
    out = Value(math.hypot(a.data, b.data), (a, b), 'hypot')
    def _backward():
        a.grad += a.data / out.data * out.grad
        b.grad += b.data / out.data * out.grad
    out._backward = _backward
    return out

def forward(ws, xs):
    total = Value(0.0)
    for i, x in enumerate(xs):
        w1, w2 = ws[i % len(ws)], ws[(7*i + 3) % len(ws)]
        h = tanh(w1 * x + w2)
        g = sin(h) * cos(w2 * 0.5) + exp(h * -0.3)
        k = hypot(g, w1 - 0.25).relu() + g**2 / (1 + w2 * w2)
        total = total + k * 0.01 + hypot(h, h) * 0.001
    return total

def problem(n):
    random.seed(2026)
    ws = [Value(random.uniform(-1, 1)) for _ in range(16)]
    xs = [random.uniform(-2, 2) for _ in range(n)]
    return ws, xs

def result(n=300):
    ws, xs = problem(n)
    out = forward(ws, xs)
    out.backward()
    return {"data": out.data, "grads": [w.grad for w in ws],
            "ops": sorted({v._op for v in [out] + ws})}
'''


def test_lecture_ops_mixed_with_builtin_ops_match_upstream(engine, upstream_path):
    ns = run_here(LECTURE_OPS, engine.Value)
    ours = ns["result"]()
    theirs = run_under_upstream(upstream_path, LECTURE_OPS, "result()")
    assert_same_numbers(ours, theirs)
    assert any(g != 0.0 for g in ours["grads"])


def test_lecture_ops_graph_is_mostly_builtin_with_many_custom_nodes(engine):
    ns = run_here(LECTURE_OPS, engine.Value)
    ws, xs = ns["problem"](300)
    out = ns["forward"](ws, xs)
    ops, seen, stack = {}, set(), [out]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            ops[v._op] = ops.get(v._op, 0) + 1
            stack.extend(v._prev)
    custom = sum(ops.get(k, 0) for k in ("sin", "cos", "exp", "tanh", "hypot"))
    builtin = sum(n for k, n in ops.items() if k not in ("sin", "cos", "exp", "tanh", "hypot", ""))
    assert custom >= 1500 and builtin >= 3000, ops


def test_lecture_ops_grads_match_finite_differences(engine):
    ns = run_here(LECTURE_OPS, engine.Value)
    ws, xs = ns["problem"](40)
    out = ns["forward"](ws, xs)
    out.backward()
    h = 1e-6
    for i in (0, 3, 7, 12):
        w = ws[i]
        w0 = w.data
        w.data = w0 + h
        up = ns["forward"](ws, xs).data
        w.data = w0 - h
        down = ns["forward"](ws, xs).data
        w.data = w0
        numeric = (up - down) / (2 * h)
        assert math.isclose(w.grad, numeric, rel_tol=1e-5, abs_tol=1e-8), (i, w.grad, numeric)


# ---------------------------------------------------------------------------------
# 2. _backward: order, replacing a built-in rule, del, calling it by hand, errors
# ---------------------------------------------------------------------------------
def scale(v, k, name, calls, Value):
    """out = k * v as a user-defined op that records (name, out.grad) when it runs."""
    out = Value(k * v.data, (v,), name)

    def _backward():
        calls.append((name, out.grad))
        v.grad += k * out.grad
    out._backward = _backward
    return out


def test_custom_rule_runs_after_every_node_that_uses_it(engine):
    V = engine.Value

    def graph(op, calls):
        x = V(0.7)
        c = op(x, 3.0, "c", calls)
        a = op(c, 2.0, "a", calls)
        b = c * x + c.relu() + c ** 2       # built-in consumers of c
        d = op(b + a, 0.5, "d", calls)
        e = d * c + op(c, -1.5, "f", calls)
        e.backward()
        return x, c

    calls = []
    x, c = graph(lambda v, k, name, calls: scale(v, k, name, calls, V), calls)
    names = [n for n, _ in calls]
    assert sorted(names) == ["a", "c", "d", "f"]
    assert names.index("c") > max(names.index("a"), names.index("d"), names.index("f"))
    assert names.index("a") > names.index("d")
    # when c's function ran, every consumer (built-in ones too) had added to c.grad
    assert dict(calls)["c"] == c.grad
    # and the grads are those of the same graph built from built-in ops only
    x2, c2 = graph(lambda v, k, name, calls: v * k, [])
    assert close(c.grad, c2.grad) and close(x.grad, x2.grad)


def test_assigned_rule_replaces_builtin_rule_and_del_restores_it(engine):
    V = engine.Value
    x, y = V(3.0), V(-2.0)
    z = x * y
    assert z._op == "*"
    builtin = z._backward
    assert callable(builtin)
    calls = []

    def rule():
        calls.append(z.grad)
        x.grad += 100.0 * z.grad        # deliberately not the product rule
    z._backward = rule
    assert z._backward is rule
    z.backward()
    assert calls == [1.0]
    assert (x.grad, y.grad) == (100.0, 0.0)

    del z._backward
    x.grad = y.grad = 0.0
    z.backward()
    assert calls == [1.0]
    assert (x.grad, y.grad) == (-2.0, 3.0)
    assert z._backward is not rule


def test_calling_backward_by_hand_as_in_the_lecture(engine):
    V = engine.Value
    # o = tanh-free version of the lecture's neuron: o = x1*w1 + x2*w2 + b
    x1, w1, x2, w2, b = V(2.0), V(-3.0), V(0.0), V(1.0), V(6.88)
    x1w1 = x1 * w1
    x2w2 = x2 * w2
    s = x1w1 + x2w2
    n = s + b
    calls = []
    o = scale(n, 2.0, "o", calls, V)       # a user-defined op on top
    o.grad = 1.0
    for node in (o, n, s, x2w2, x1w1):      # reversed topological order, by hand
        node._backward()
    assert calls == [("o", 1.0)]
    assert n.grad == 2.0 and b.grad == 2.0
    assert (x1.grad, w1.grad, x2.grad, w2.grad) == (-6.0, 4.0, 2.0, 0.0)
    # a leaf's _backward does nothing, as upstream's lambda: None
    x1._backward()
    assert x1.grad == -6.0


def test_assigned_function_runs_when_called_by_hand(engine):
    V = engine.Value
    x = V(1.0)
    out = V(5.0, (x,), "mine")
    hits = []
    out._backward = lambda: hits.append("ran")
    out._backward()
    out._backward()
    assert hits == ["ran", "ran"]


def test_raising_backward_propagates_and_next_backward_works(engine):
    V = engine.Value
    x, y = V(0.5), V(-1.25)
    armed = [True]
    out = V(x.data * 2.0, (x,), "twice")

    def _backward():
        if armed[0]:
            raise ZeroDivisionError("boom in a user rule")
        x.grad += 2.0 * out.grad
    out._backward = _backward
    prod = out * y
    loss = prod + x
    with pytest.raises(ZeroDivisionError, match="boom"):
        loss.backward()
    # the marks of that walk are cleared: the same graph, and a graph sharing its
    # nodes, walk again with the right result
    armed[0] = False
    for v in (x, y, out, prod, loss):   # grads accumulate, as upstream's
        v.grad = 0.0
    loss.backward()
    assert (x.grad, y.grad) == (2.0 * -1.25 + 1.0, 1.0)
    other = (loss + out * x) * 2.0
    for v in (x, y, out, prod, loss):
        v.grad = 0.0
    other.backward()
    assert other.data == 2.0 * (loss.data + out.data * x.data)
    assert x.grad == 2.0 * (2.0 * -1.25 + 1.0 + out.data + x.data * 2.0)
    t = engine.Tape((x * y + y).relu() + x)
    assert t.forward() == (x * y + y).relu().data + x.data


# ---------------------------------------------------------------------------------
# 3. Subclasses of Value
# ---------------------------------------------------------------------------------
VALUE_EXT = '''
import math

class ValueExt(Value):
    def __add__(self, other):
        other = other if isinstance(other, Value) else ValueExt(other)
        out = ValueExt(self.data + other.data, (self, other), '+')
        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else ValueExt(other)
        out = ValueExt(self.data * other.data, (self, other), '*')
        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, k):
        assert isinstance(k, (int, float))
        out = ValueExt(self.data ** k, (self,), f'**{k}')
        def _backward():
            self.grad += k * self.data ** (k - 1) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        out = ValueExt(max(self.data, 0.0), (self,), 'ReLU')
        def _backward():
            self.grad += (out.data > 0) * out.grad
        out._backward = _backward
        return out

    def sigmoid(self):
        s = 1.0 / (1.0 + math.exp(-self.data))
        out = ValueExt(s, (self,), 'sigmoid')
        def _backward():
            self.grad += s * (1.0 - s) * out.grad
        out._backward = _backward
        return out

    def __radd__(self, other): return self + other
    def __rmul__(self, other): return self * other
    def __neg__(self): return self * -1
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

def mixed():
    a, c = ValueExt(1.5), ValueExt(0.25)
    b, d = Value(-0.5), Value(2.0)
    e = a * b + c
    f = b * a
    g = (e - f).relu() + d ** 2 + 3 + (2 - c)
    h = (g * e).sigmoid() + (f * -1).relu() * d / a
    k = h ** 2 + h + 1 / c
    total = k
    # 100 rounds: up to 6 levels each, so upstream's recursive build_topo stays under
    # the recursion limit whichever order its _prev sets iterate in
    for i in range(100):
        total = total + (total * 0.001 + b).relu() * 0.01 + (a * d).sigmoid() * 0.01
    total.backward()
    nodes = {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g, "h": h, "k": k,
             "total": total}
    return {"types": {n: type(v).__name__ for n, v in nodes.items()},
            "data": {n: v.data for n, v in nodes.items()},
            "grads": {n: v.grad for n, v in nodes.items()}}
'''


def test_subclass_mixed_with_plain_values_matches_upstream(engine, upstream_path):
    ns = run_here(VALUE_EXT, engine.Value)
    ours = ns["mixed"]()
    theirs = run_under_upstream(upstream_path, VALUE_EXT, "mixed()")
    assert_same_numbers(ours, theirs)
    assert ours["types"]["a"] == "ValueExt" and ours["types"]["b"] == "Value"


def test_subclass_instances_are_values_with_extra_methods(engine):
    ns = run_here(VALUE_EXT, engine.Value)
    ValueExt = ns["ValueExt"]
    p = ValueExt(0.0)
    assert isinstance(p, engine.Value)
    s = p.sigmoid()
    assert type(s) is ValueExt and s.data == 0.5 and s._op == "sigmoid"
    assert s._prev == {p}
    s.backward()
    assert p.grad == 0.25
    # a plain Value has the built-in sigmoid; the subclass' own is used for its instances
    q = engine.Value(0.0)
    assert type(q.sigmoid()) is engine.Value
    p.note = "per-instance attribute"
    assert p.note == "per-instance attribute"


SANITY = '''
def sanity():
    x = Value(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    return [y.data, x.grad]

def more_ops():
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
    g.backward()
    return [g.data, a.grad, b.grad]
'''


def test_upstream_engine_pasted_as_a_subclass_gives_upstreams_numbers(engine, upstream_path):
    with open(os.path.join(upstream_path, "micrograd", "engine.py")) as f:
        text = f.read()
    assert text.count("class Value:") == 1
    pasted = text.replace("class Value:", "class Value(CoreValue):")
    ns = {"CoreValue": engine.Value, "__name__": "pasted_engine"}
    exec(compile(pasted, "<upstream engine.py as a subclass>", "exec"), ns)
    Pasted = ns["Value"]
    assert Pasted is not engine.Value and issubclass(Pasted, engine.Value)

    mine = run_here(SANITY, Pasted)
    ours = {"sanity": mine["sanity"](), "more_ops": mine["more_ops"]()}
    theirs = run_under_upstream(upstream_path, SANITY,
                                '{"sanity": sanity(), "more_ops": more_ops()}')
    assert_same_numbers(ours, theirs)
    # the numbers upstream's own tests check against PyTorch
    assert ours["sanity"] == [-20.0, 46.0]
    assert [round(v, 6) for v in ours["more_ops"]] == [24.704082, 138.833819, 645.577259]

    # every node is the pasted class, with upstream's attributes
    x = Pasted(2.0)
    y = (x * 3).relu()
    assert type(y) is Pasted and y._op == "ReLU" and isinstance(y._prev, set)
    assert {type(v) for v in y._prev} == {Pasted}

"""Walks remembered (src/core/recall.pxi): backward() on a graph rebuilt in the slots of
one it walked before reuses that walk's order once it has checked the graph node by node.

Only the compiled core remembers walks; every grad must still equal the twin's, bit for
bit, whichever path served it. The core stops remembering for good once a _backward is
assigned or Value is subclassed, which other tests do: each test here runs in a fresh
interpreter."""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import subprocess_env

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("micrograd._engine", fromlist=["_"]), "_recall_stats"),
    reason="no compiled core")


def run(code, timeout=300):
    """Run code in a fresh interpreter; the JSON object on its last line."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, "exit %d\n%s\n%s" % (proc.returncode, proc.stdout[-2000:],
                                                     proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Random programs over one op family in which every op makes exactly two nodes, and a
# root that sums them all: programs of one length allocate alike and walk alike in size,
# so a program rebuilt after another lands in its slots, and the remembered walk of the
# one must be found stale for the other. Every grad is compared with the twin's.
FUZZ = """
import json, random, struct
from micrograd import _engine, _pure

def program(seed, n_ops):
    rng = random.Random(seed)
    return [(rng.randrange(7), rng.randrange(1 << 30), rng.randrange(1 << 30)) for _ in range(n_ops)]

def build(Value, prog, inputs):
    pool = [Value(x) for x in inputs]
    made = []
    for op, i, j in prog:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        n = [lambda: (a + b).tanh(), lambda: (a * b).tanh(), lambda: a.relu() + b,
             lambda: a.sigmoid().log(), lambda: a.tanh() ** 2, lambda: a.sigmoid() * b,
             lambda: (a * b).sigmoid()][op]()
        pool.append(n)
        made.append(n)
    root = sum(made[1:], made[0])
    return root, pool

def bits(x):
    return struct.pack("<d", x)

rng = random.Random(SEED)
programs = [program(s, N_OPS) for s in range(3)]
kept = None
mismatches = []
prog = programs[0]
for it in range(ITERATIONS):
    if rng.random() < 0.3:              # a loop runs a graph for a while, then another
        prog = programs[rng.randrange(len(programs))]
    inputs = [rng.uniform(-2, 2) for _ in range(3)]
    ours, twin = build(_engine.Value, prog, inputs), build(_pure.Value, prog, inputs)
    for _ in range(rng.choice((1, 1, 2))):
        ours[0].backward()
        twin[0].backward()
    for k, (p, q) in enumerate(zip(ours[1], twin[1])):
        if bits(p.grad) != bits(q.grad) or bits(p.data) != bits(q.data):
            mismatches.append((it, k, p.grad, q.grad))
    # a notebook's loop holds the last graph while it builds the next; a tidy one drops it
    kept = ours if rng.random() < 0.5 else None
    del ours, twin
recalled, stale, _ = _engine._recall_stats()
print(json.dumps({"recalled": recalled, "stale": stale, "mismatches": mismatches[:5]}))
"""


def fuzz(seed, iterations=200, n_ops=30):
    return FUZZ.replace("SEED", str(seed)).replace("ITERATIONS", str(iterations)).replace(
        "N_OPS", str(n_ops))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rebuilt_graphs_recalled_or_found_stale_give_the_twins_grads(seed):
    out = run(fuzz(seed))
    assert out["mismatches"] == []
    assert out["recalled"] > 20, out      # the check served many backward() calls...
    assert out["stale"] > 5, out          # ...and turned down graphs rebuilt otherwise


def test_the_demo_loop_is_recalled_whether_it_drops_the_last_graph_or_not():
    out = run("""
        import json
        from micrograd import _engine
        from micrograd.demo import Demo
        d = Demo("cython")
        seen = {}
        for pattern in ("drops", "holds"):
            before = _engine._recall_stats()[0]
            total = scores = None
            roots = set()
            for k in range(8):
                if pattern == "drops":
                    total = scores = None
                total, acc, scores = d.loss()
                roots.add(id(total))
                d.model.zero_grad()
                total.backward()
                for p in d.model.parameters():
                    p.data -= 0.01 * p.grad
            seen[pattern] = (_engine._recall_stats()[0] - before, len(roots))
            del total, scores
        print(json.dumps(seen))
    """)
    # the last graph dropped first: one set of slots; held: two, taken in turn
    assert out["drops"][1] == 1 and out["drops"][0] >= 5, out
    assert out["holds"][1] == 2 and out["holds"][0] >= 4, out


# Each changes one thing the check must see, between backward() calls on a graph whose
# walk is remembered, then runs backward() once more; the twin plays the same. The graph
# is rebuilt in the slots of the first (asserted: otherwise the check would not be put to
# the test) or kept and changed.
SCENARIO = """
import json, struct
from micrograd import _engine, _pure

def play(E):
    Value = E.Value
    u, v = Value(0.5), Value(-1.5)      # long-lived operands, below the graph's slots
    x = Value(1.25)
    y = x * u
    root = y * v
    ids = [id(x), id(y), id(root)]
    root.backward(); root.backward()    # the first walk is counted, the second remembered
    before = _engine._recall_stats()
CHANGE
    root.backward()
    after = _engine._recall_stats()
    return {"same_slots": [id(x), id(y), id(root)] == ids,
            "recalled": after[0] - before[0], "stale": after[1] - before[1],
            "grads": [struct.pack("<d", n.grad).hex() for n in (u, v, x, y, root)]}

ours, twin = play(_engine), play(_pure)
print(json.dumps({**ours, "twin_grads": twin["grads"]}))
"""


def scenario(change):
    return run(SCENARIO.replace("CHANGE", textwrap.indent(textwrap.dedent(change), "    ")))


def test_an_op_node_where_a_leaf_operand_was_is_walked():
    # without the leaf check, x's rule would be missed: u and v would lose what reaches
    # them through x
    out = scenario("""
        del x, y, root
        x = u * v
        y = x * u
        root = y * v
    """)
    assert out["same_slots"], out
    assert (out["stale"], out["recalled"]) == (1, 0), out
    assert out["grads"] == out["twin_grads"]


@pytest.mark.parametrize("change", [
    # a node's op changed: POWC keeps its exponent where a second operand's pointer was
    "del x, y, root\nx = Value(1.25)\ny = x + u\nroot = y * v",
    # operands swapped
    "del x, y, root\nx = Value(1.25)\ny = u * x\nroot = y * v",
    # a node reset to a leaf by __init__, the graph kept
    "y.__init__(3.0)",
    # a leaf operand made a hand-built node by setting _prev
    "x._prev = (Value(2.0) * u,)",
])
def test_a_changed_graph_is_found_stale_and_walked(change):
    out = scenario(change)
    assert (out["stale"], out["recalled"]) == (1, 0), out
    assert out["grads"] == out["twin_grads"]


def test_an_unchanged_graph_is_recalled():
    out = scenario("pass")
    assert (out["stale"], out["recalled"]) == (0, 1), out
    assert out["grads"] == out["twin_grads"]


def test_a_backward_that_would_raise_raises_from_a_remembered_walk_and_changes_nothing():
    out = run("""
        import json
        from micrograd._engine import Value, _recall_stats
        x, v = Value(2.0), Value(-1.5)
        root = x.log() * v
        root.backward(); root.backward()
        x.data = 0.0                        # d log(x)/dx = 1/x: Python raises
        grads = (x.grad, v.grad)
        try:
            root.backward()
            raised = None
        except ZeroDivisionError as exc:
            raised = str(exc)
        unchanged = (x.grad, v.grad) == grads
        x.data = 2.0
        root.backward(); root.backward()    # walked and remembered again, then recalled
        print(json.dumps({"raised": raised, "unchanged": unchanged, "stats": _recall_stats()}))
    """)
    assert out["raised"] == "float division by zero" and out["unchanged"], out
    assert out["stats"][:2] == [1, 1], out


@pytest.mark.parametrize("change", [
    "v._backward = lambda: calls.append(1)",     # the walk now enters the leaf v
    "class Sub(Value):\n    pass",
])
def test_python_rules_possible_turn_remembering_off(change):
    out = run("""
        import json
        from micrograd._engine import Value, _recall_stats
        calls = []
        x, v = Value(2.0), Value(-1.5)
        root = (x * x) * v
        root.backward(); root.backward(); root.backward()
        before = _recall_stats()
""" + textwrap.indent(change, "        ") + """
        root.backward(); root.backward(); root.backward()
        print(json.dumps({"before": before, "after": _recall_stats(), "calls": len(calls),
                          "x_grad": x.grad}))
    """)
    assert out["before"][:2] == [1, 0] and out["after"][:2] == [1, 0], out
    assert out["x_grad"] == 2 * 2.0 * -1.5 * sum(range(1, 7))   # x*x's grad accumulates too
    assert out["calls"] == (3 if "_backward" in change else 0)


def test_graphs_never_rebuilt_in_the_same_slots_are_seldom_remembered():
    # as many nodes each time, never in the same slots (all are kept): each walk would be
    # remembered in vain; past the first few, remembering backs off to one walk in 64
    out = run("""
        import json
        from micrograd._engine import Value, _recall_stats
        kept = []
        for i in range(400):
            x = Value(float(i))
            root = (x * x + x).tanh()
            root.backward()
            kept.append(root)
        print(json.dumps(_recall_stats()))
    """)
    assert out[0] == 0 and out[2] <= 16, out

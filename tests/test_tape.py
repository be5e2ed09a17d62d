"""Tape: record a graph once, replay forward/backward; must equal eager rebuilds."""
import copy
import gc
import math
import pickle
import random

import pytest

from micrograd import _engine

from conftest import engine_name, random_graph, random_inputs, walk


def eager(engine, xs, seed):
    """A freshly built graph for inputs xs, after backward()."""
    inputs = [engine.Value(x) for x in xs]
    root, pool = random_graph(inputs, seed)
    root.backward()
    return inputs, root, pool


def close(x, y):
    return x == y or (math.isnan(x) and math.isnan(y))


@pytest.mark.parametrize("seed", range(8))
def test_replay_equals_eager_on_random_graphs(engine, seed):
    V = engine.Value
    rng = random.Random(1000 + seed)
    inputs = [V(x) for x in random_inputs(rng)]
    root, pool = random_graph(inputs, seed)
    tape = engine.Tape(root)
    for trial in range(5):
        xs = random_inputs(rng)
        for v, x in zip(inputs, xs):
            v.data = x
            v.grad = 0.0
        loss = tape.forward()
        tape.backward()
        fresh_inputs, fresh_root, fresh_pool = eager(engine, xs, seed)
        assert close(loss, fresh_root.data), (trial, loss, fresh_root.data)
        assert root.data == loss
        assert root.grad == 1.0
        for v, w in zip(inputs, fresh_inputs):
            assert close(v.grad, w.grad), (trial, v.grad, w.grad)
        for v, w in zip(pool, fresh_pool):          # every node held here: all up to date
            assert close(v.data, w.data) and close(v.grad, w.grad)


@pytest.mark.parametrize("seed", range(4))
def test_unheld_interior_nodes_are_synced_when_reached(engine, seed):
    """After replay every recorded Value holds what an eager rebuild would give, also the
    ones only reachable through _prev (README: synced when something reaches them)."""
    V = engine.Value
    rng = random.Random(seed)
    inputs = [V(x) for x in random_inputs(rng)]
    root, pool = random_graph(inputs, seed)
    del pool                             # only the root and the inputs are held
    tape = engine.Tape(root)
    xs = random_inputs(rng)
    for v, x in zip(inputs, xs):
        v.data = x
    tape.forward()
    tape.backward()
    fresh_inputs, fresh_root, fresh_pool = eager(engine, xs, seed)
    ours = sorted((v.data, v.grad) for v in walk(root))
    theirs = sorted((v.data, v.grad) for v in walk(fresh_root))
    assert len(ours) == len(theirs)
    for (d1, g1), (d2, g2) in zip(ours, theirs):
        assert close(d1, d2) and close(g1, g2)


def test_tape_nodes_equal_an_eager_rebuilds_nodes(engine):
    V = engine.Value
    rng = random.Random(5)
    inputs = [V(x) for x in random_inputs(rng)]
    root, _ = random_graph(inputs, 5)
    tape = engine.Tape(root)
    xs = random_inputs(rng)
    for v, x in zip(inputs, xs):
        v.data = x
    tape.forward()
    tape.backward()
    fresh_inputs, fresh_root, _ = eager(engine, xs, 5)
    fresh_nodes = engine.Tape(fresh_root).nodes
    nodes = tape.nodes
    assert len(nodes) == len(fresh_nodes) == len(tape)
    for v, w in zip(nodes, fresh_nodes):
        assert v._op == w._op
        assert close(v.data, w.data) and close(v.grad, w.grad)


def test_pickled_graph_after_replay_has_replayed_values(engine):
    V = engine.Value
    x = V(1.0)
    root = ((x * 3).tanh() + (x * x).exp()) * 2
    tape = engine.Tape(root)
    x.data = -0.5
    tape.forward()
    tape.backward()
    for clone in (pickle.loads(pickle.dumps(root)), copy.deepcopy(root)):
        fx = V(-0.5)
        fresh = ((fx * 3).tanh() + (fx * fx).exp()) * 2
        fresh.backward()
        assert (sorted((v.data, v.grad) for v in walk(clone))
                == sorted((v.data, v.grad) for v in walk(fresh)))
        assert clone.data == fresh.data


def test_rebinding_inputs(engine):
    V = engine.Value
    x = V(1.0)
    y = x * 3 + 1
    tape = engine.Tape(y)
    assert tape.forward() == 4.0
    x.data = 2.0
    assert tape.forward() == 7.0
    assert y.data == 7.0
    x.data = -1.0
    assert tape.forward() == -2.0
    tape.backward()
    assert x.grad == 3.0


def test_relu_branches_flip_between_replays(engine):
    V = engine.Value
    x, w = V(1.0), V(2.0)
    h = (w * x - 1).relu()
    out = h * 3 + (1 - x).relu() * 5
    tape = engine.Tape(out)
    for xv, expected, dx in ((1.0, 3.0, 6.0), (-1.0, 10.0, -5.0), (2.0, 9.0, 6.0),
                             (0.25, 3.75, -5.0), (0.5, 2.5, -5.0)):
        # at x = 0.5, w*x - 1 = 0: relu' is 0 there
        x.data = xv
        x.grad = w.grad = 0.0
        assert tape.forward() == pytest.approx(expected, rel=1e-15)
        tape.backward()
        assert x.grad == pytest.approx(dx, rel=1e-15)
        fresh_x, fresh_w = V(xv), V(2.0)
        fresh = (fresh_w * fresh_x - 1).relu() * 3 + (1 - fresh_x).relu() * 5
        fresh.backward()
        assert (out.data, x.grad, w.grad) == (fresh.data, fresh_x.grad, fresh_w.grad)


def test_forward_error_then_fixed_input(engine):
    V = engine.Value
    x = V(2.0)
    y = (x * 2 + 1).log() * x
    tape = engine.Tape(y)
    assert tape.forward() == pytest.approx(math.log(5) * 2, rel=1e-15)
    x.data = -5.0
    with pytest.raises(ValueError) as info:
        tape.forward()
    assert info.type is ValueError
    assert x.data == -5.0
    x.data = 3.0
    x.grad = 0.0
    assert tape.forward() == pytest.approx(math.log(7) * 3, rel=1e-15)
    assert y.data == pytest.approx(math.log(7) * 3, rel=1e-15)
    tape.backward()
    assert x.grad == pytest.approx(math.log(7) + 3 * 2 / 7, rel=1e-15)


@pytest.mark.parametrize("make, bad, expected", [
    (lambda x: (x ** -1) * 2, 0.0, ZeroDivisionError),
    (lambda x: x.exp() + 1, 1000.0, OverflowError),
    (lambda x: (x - 1) ** 0.5, 0.0, ValueError),
    (lambda x: 2 / (x - 3), 3.0, ZeroDivisionError),
], ids=["reciprocal", "exp", "sqrt", "division"])
def test_forward_errors_are_pythons(engine, make, bad, expected):
    V = engine.Value
    x = V(2.0)
    y = make(x)
    tape = engine.Tape(y)
    good = tape.forward()
    x.data = bad
    with pytest.raises(expected) as info:
        tape.forward()
    assert info.type is expected
    x.data = 2.0
    assert tape.forward() == good


def test_backward_error_changes_no_grad(engine):
    V = engine.Value
    x, w = V(4.0), V(3.0)
    y = x ** 0.5 * w
    tape = engine.Tape(y)
    tape.forward()
    tape.backward()
    assert (x.grad, w.grad) == (0.75, 2.0)
    x.data = 0.0
    assert tape.forward() == 0.0
    with pytest.raises(ZeroDivisionError):
        tape.backward()
    assert (x.grad, w.grad, y.grad) == (0.75, 2.0, 1.0)
    x.data = 1.0
    tape.forward()
    tape.backward()
    assert (x.grad, w.grad) == (0.75 + 1.5, 2.0 + 1.0)


def test_backward_gives_fresh_graph_gradients_each_time(engine):
    """Leaves accumulate (as eager); intermediate nodes restart from 0 every replay."""
    V = engine.Value
    x = V(1.5)
    h = x * x
    y = h * 3 + h
    tape = engine.Tape(y)
    tape.forward()
    tape.backward()
    assert (x.grad, h.grad, y.grad) == (12.0, 4.0, 1.0)
    tape.backward()
    assert (x.grad, h.grad, y.grad) == (24.0, 4.0, 1.0)
    x.grad = 0.0
    tape.forward()
    tape.backward()
    assert x.grad == 12.0


def test_eager_backward_after_replay(engine):
    V = engine.Value
    x = V(1.0)
    h = (x * 2).tanh()
    y = h * h + x
    del h
    tape = engine.Tape(y)
    x.data = 0.3
    tape.forward()
    y.backward()          # eager, on the replayed graph: must see the replayed data
    fx = V(0.3)
    fy = (fx * 2).tanh() * (fx * 2).tanh() + fx
    fy.backward()
    assert y.data == fy.data
    assert x.grad == pytest.approx(fx.grad, rel=1e-15)


def test_len_leaves_nodes_root(engine):
    V = engine.Value
    x, y = V(3.0), V(4.0)
    root = x * y + x
    tape = engine.Tape(root)
    assert len(tape) == 4
    assert tape.root is root
    assert len(tape.leaves) == 2
    assert tape.leaves[0] is x and tape.leaves[1] is y
    nodes = tape.nodes
    assert len(nodes) == 4 and nodes[-1] is root
    assert nodes[0] is x and nodes[1] is y
    assert nodes[2]._op == "*" and nodes[2]._prev == {x, y}
    # constants are leaves too
    z = V(3.0)
    r2 = z * 2 + 1
    t2 = engine.Tape(r2)
    assert len(t2) == 5
    assert [v.data for v in t2.leaves] == [3.0, 2.0, 1.0]
    assert t2.leaves[0] is z
    assert all(v._op == "" for v in t2.leaves)
    assert repr(t2) == f"Tape(5 nodes, 3 leaves, {t2.n_instructions} instructions)"


# ---------------------------------------------------------------------------------
# FMA: an ADD and the MUL that feeds only it run as one instruction.
# ---------------------------------------------------------------------------------
def neuron(V, n, seed=0):
    rng = random.Random(seed)
    w = [V(rng.uniform(-1, 1)) for _ in range(n)]
    x = [V(rng.uniform(-1, 1)) for _ in range(n)]
    b = V(0.1)
    return sum((wi * xi for wi, xi in zip(w, x)), b), w, x, b   # nn.py's Neuron


def test_a_neurons_products_fuse_into_its_sums(engine):
    act, w, x, b = neuron(engine.Value, 5)
    tape = engine.Tape(act)
    assert len(tape) == 11 + 10                 # 11 leaves, 5 MULs, 5 ADDs
    assert tape.n_instructions == 5
    assert "5 instructions" in repr(tape)
    nodes = tape.nodes                          # still topological: each MUL before its ADD
    pos = {id(v): i for i, v in enumerate(nodes)}
    assert nodes[-1] is act and len(pos) == len(nodes) == len(tape)
    for v in nodes:
        for c in v._prev:
            assert pos[id(c)] < pos[id(v)]


def test_fused_products_hold_eager_values_when_reached(engine):
    """The MULs a replay skips get their data and grads when something reaches them."""
    V = engine.Value
    act, w, x, b = neuron(V, 4)
    tape = engine.Tape(act)
    for trial in range(3):
        for v in w + x:
            v.data = v.data * 0.5 + 0.25 * trial
            v.grad = 0.0
        tape.forward()
        tape.backward()
        fw, fx = [V(v.data) for v in w], [V(v.data) for v in x]
        fresh = sum((wi * xi for wi, xi in zip(fw, fx)), V(b.data))
        fresh.backward()
        assert act.data == fresh.data
        assert [v.grad for v in w + x] == [v.grad for v in fw + fx]
        # walk down the sums: each ADD's children are the previous sum and a MUL
        ours, theirs = act, fresh
        while ours._op == "+":
            (m,) = [c for c in ours._prev if c._op == "*"]
            (fm,) = [c for c in theirs._prev if c._op == "*"]
            assert (m.data, m.grad) == (fm.data, fm.grad) != (0.0, 0.0)
            (ours,) = [c for c in ours._prev if c is not m]
            (theirs,) = [c for c in theirs._prev if c is not fm]


def test_products_used_twice_or_held_are_not_fused(engine):
    V = engine.Value
    w, x, b = V(0.5), V(-2.0), V(0.25)
    m = w * x
    z = (b + m) + m                 # m feeds two ADDs: it needs its own slot
    tape = engine.Tape(z)
    assert tape.n_instructions == 3
    p = w * x
    held = b + p                    # p is held by the user
    t2 = engine.Tape(held)
    w.data = 3.0
    assert t2.forward() == 0.25 + 3.0 * -2.0
    t2.backward()
    assert (p.data, p.grad) == (-6.0, 1.0)
    assert w.grad == -2.0 and x.grad == 3.0


def test_fused_replay_equals_eager_bit_for_bit_on_an_mlp(engine, nn):
    """Products, sums and relus as in training; every grad the same float as eager."""
    random.seed(7)
    model = nn.MLP(3, [8, 8, 1])
    rng = random.Random(3)
    xs = [[engine.Value(rng.uniform(-2, 2)) for _ in range(3)] for _ in range(6)]
    loss = sum((model(x) - 0.5) ** 2 for x in xs)
    tape = engine.Tape(loss)
    assert tape.n_instructions < len(tape) - len(tape.leaves)
    for trial in range(3):
        for p in model.parameters():
            p.data += 0.01 * (trial + 1)
        model.zero_grad()
        got = tape.forward()
        tape.backward()
        grads = [p.grad for p in model.parameters()]
        model.zero_grad()
        fresh = sum((model(x) - 0.5) ** 2 for x in xs)
        fresh.backward()
        assert got == fresh.data
        assert grads == [p.grad for p in model.parameters()]


@pytest.mark.parametrize("old", [0.0, -0.0, 2.5])
@pytest.mark.parametrize("w0", [0.0, -0.0, -3.0])
def test_leaves_used_once_accumulate_as_eager_signed_zeros_too(engine, old, w0):
    """A leaf used once is added to its Value after replay, not read first: -0.0 and
    +0.0 grads must still come out as eager's old + contribution."""
    V = engine.Value
    x, w, u = V(1.5), V(w0), V(0.5)
    z = x * w + u                   # x, w and u are each used once
    tape = engine.Tape(z)
    fx, fw, fu = V(1.5), V(w0), V(0.5)
    for v in (x, w, u, fx, fw, fu):
        v.grad = old
    tape.forward()
    tape.backward()
    (fx * fw + fu).backward()
    for ours, theirs in ((x, fx), (w, fw), (u, fu)):
        assert ours.grad == theirs.grad
        assert math.copysign(1.0, ours.grad) == math.copysign(1.0, theirs.grad)


def running_sums(V, a, b, c, d, e):
    """Sums of products whose acc is also a product's operand, next to plain ones."""
    s1 = a * b + c                  # FMA, its acc a leaf
    s2 = s1 + s1 * d                # FMA whose acc is the instruction below, and a factor
    s3 = s2 + d * s2                # the same, the acc the other factor
    s4 = s3 + a * e + b * e         # a plain running sum
    s5 = s4 + s4 * s4               # acc, and both factors
    return (s5 * c).relu() + s5


def test_running_sums_whose_acc_is_also_a_factor_replay_as_eager(engine):
    """Backward carries a running sum's grad down in a register: not when the acc is
    also a factor, whose grad the MUL's share then adds to."""
    V = engine.Value
    xs = [0.5, -1.25, 0.75, 2.0, -0.5]
    leaves = [V(x) for x in xs]
    root = running_sums(V, *leaves)
    tape = engine.Tape(root)
    assert tape.n_instructions < len(tape) - len(tape.leaves)   # the products fused
    for trial in range(3):
        ys = [x + 0.125 * trial for x in xs]
        for v, y in zip(leaves, ys):
            v.data, v.grad = y, 0.0
        got = tape.forward()
        tape.backward()
        fresh = [V(y) for y in ys]
        want = running_sums(V, *fresh)
        want.backward()
        assert got == want.data
        assert [v.grad for v in leaves] == [v.grad for v in fresh]


def test_a_tape_records_once(engine):
    x = engine.Value(2.0)
    tape = engine.Tape(x * x + 1)
    with pytest.raises(RuntimeError, match="already initialised"):
        tape.__init__(x * 3)
    assert len(tape) == 4 and tape.forward() == 5.0


def test_tape_of_a_lone_leaf(engine):
    x = engine.Value(2.5)
    tape = engine.Tape(x)
    assert len(tape) == 1
    assert tape.leaves == [x] and tape.nodes == [x]
    assert tape.forward() == 2.5
    tape.backward()
    assert x.grad == 1.0


def test_tape_needs_a_value(engine, both_engines):
    with pytest.raises(TypeError):
        engine.Tape(3.0)
    with pytest.raises(TypeError):
        engine.Tape(None)
    (other,) = [e for e in both_engines if e is not engine]
    with pytest.raises(TypeError):
        engine.Tape(other.Value(1.0))


def test_two_tapes_sharing_nodes(engine):
    V = engine.Value
    x = V(1.0)
    h = (x * 3).tanh()
    a = h * 2
    b = h + x
    ta, tb = engine.Tape(a), engine.Tape(b)
    del h
    x.data = 0.2
    assert ta.forward() == pytest.approx(math.tanh(0.6) * 2, rel=1e-15)
    assert tb.forward() == pytest.approx(math.tanh(0.6) + 0.2, rel=1e-15)
    ta.backward()
    g = x.grad
    assert g == pytest.approx(6 * (1 - math.tanh(0.6) ** 2), rel=1e-14)
    del ta
    gc.collect()
    x.data = -0.4
    tb.forward()
    tb.backward()
    assert x.grad == pytest.approx(g + 3 * (1 - math.tanh(-1.2) ** 2) + 1, rel=1e-14)
    (hh,) = [n for n in b._prev if n is not x]
    assert hh.data == pytest.approx(math.tanh(-1.2), rel=1e-15)
    assert a.data == pytest.approx(math.tanh(0.6) * 2, rel=1e-15)   # a's tape is gone


def test_interior_nodes_keep_the_last_replay_after_the_tape_dies(engine):
    V = engine.Value
    x = V(1.0)
    y = (x * 2).exp() + x
    tape = engine.Tape(y)
    x.data = 0.5
    tape.forward()
    tape.backward()
    del tape
    gc.collect()
    (e,) = [n for n in y._prev if n is not x]
    assert e.data == pytest.approx(math.exp(1.0), rel=1e-15)
    assert e.grad == 1.0


@pytest.mark.parametrize("n", [pytest.param(1_000_000, marks=pytest.mark.slow, id="1M"),
                               pytest.param(100_000, id="100k")])
def test_long_chain_tape_compiled(n):
    V = _engine.Value
    x, y = V(1.0), V(1.0)
    z = x
    for _ in range(n):
        z = z * y
    tape = _engine.Tape(z)
    assert len(tape) == n + 2
    assert tape.leaves == [x, y]        # Values compare by identity
    y.data = 1.000001
    assert tape.forward() == pytest.approx(math.exp(n * math.log1p(1e-6)), rel=1e-6)
    assert z.data == tape.forward()
    tape.backward()
    assert x.grad == pytest.approx(math.exp(n * math.log1p(1e-6)), rel=1e-6)
    assert y.grad == pytest.approx(n * math.exp((n - 1) * math.log1p(1e-6)), rel=1e-6)
    grads = (x.grad, y.grad)
    for v in tape.nodes:
        v.grad = 0.0
    z.backward()            # eager on the replayed graph: the same
    assert (x.grad, y.grad) == pytest.approx(grads, rel=1e-12)
    del z
    del tape                # frees the chain without recursion
    assert x.data == 1.0


def big_dag(V, xs, n):
    """n op nodes over leaves xs: sums of products (FMAs once taped), relu, tanh, and far
    operands drawn from every earlier node."""
    rng = random.Random(5)
    nodes = list(xs)
    z = xs[0]
    while len(nodes) < n:
        r = nodes[rng.randrange(len(nodes))]
        z = z + r * xs[rng.randrange(len(xs))]
        z = z.tanh() if rng.random() < 0.1 else (z * 0.5).relu()
        nodes.append(z)
    return z


def replays_equal_eager(build, xs, tape, inputs):
    """Replay tape (recorded from build(V, xs, 150_000)) at each list of inputs; each time
    the same loss and leaf grads, bit for bit, as an eager rebuild."""
    V = _engine.Value
    for new in inputs:
        for v, x in zip(xs, new):
            v.data, v.grad = x, 0.0
        loss = tape.forward()
        tape.backward()
        fresh = [V(x) for x in new]
        root = build(V, fresh, 150_000)
        root.backward()
        assert loss == root.data
        assert [v.grad for v in xs] == [v.grad for v in fresh]


def test_replay_of_a_tape_bigger_than_the_caches_equals_eager():
    """Over PREFETCH_FROM slots a replay prefetches: the same floats as eager."""
    V = _engine.Value
    xs = [V(0.1 * i - 0.4) for i in range(9)]
    tape = _engine.Tape(big_dag(V, xs, 150_000))
    assert len(tape) > 1 << 17 and tape.n_instructions < len(tape) - len(xs)   # fused
    replays_equal_eager(big_dag, xs, tape,
                        [[0.13 * i - 0.5 + 0.01 * trial for i in range(9)] for trial in range(2)])


def neuron_sums(V, xs, n):
    """About n nodes of neuron sums (chains of 24 FMAs once taped) over xs, each relu'd
    and fed to the next sum as one of its inputs, added up."""
    total, h = V(0.0), xs[0]
    for i in range(n // 52):
        s = sum((w * (h if j == 5 else xs[(i + 3 * j) % len(xs)]) for j, w in enumerate(xs[:24])),
                xs[i % len(xs)])
        h = s.relu()
        total = total + h
    return total


def test_neuron_sums_of_a_tape_bigger_than_the_caches_equal_eager():
    """Sums run in forward's loop for chains of FMAs, which prefetches on big tapes too."""
    V = _engine.Value
    xs = [V(0.05 * i - 0.6) for i in range(40)]
    tape = _engine.Tape(neuron_sums(V, xs, 150_000))
    assert len(tape) > 1 << 17
    replays_equal_eager(neuron_sums, xs, tape,
                        [[0.07 * i - 1.0 - 0.3 * trial for i in range(40)] for trial in range(2)])


# 3 steps: the same runs test_upstream.py compares with upstream's first steps (cached)
@pytest.mark.parametrize("steps", [pytest.param(100, marks=pytest.mark.slow), 3])
def test_demo_with_tape_equals_eager(engine, demo_history, steps):
    eager_run = demo_history(engine_name(engine), False, steps)
    taped = demo_history(engine_name(engine), True, steps)
    assert len(eager_run) == len(taped) == steps
    for k, ((l1, a1), (l2, a2)) in enumerate(zip(eager_run, taped)):
        assert l1 == l2, (k, l1, l2)        # replay computes the same floats as eager
        assert a1 == a2
    assert eager_run[-1][0] < eager_run[0][0]
    if steps == 100:
        assert taped[-1][1] == 1.0          # upstream's notebook reaches 100% accuracy


def test_demo_tape_step_scores_are_replayed(engine):
    from micrograd.demo import Demo
    d = Demo(engine_name(engine))
    d.train(2, tape=True)
    scores = d._scores
    e = Demo(engine_name(engine))
    e.train(1, tape=False)             # the same parameters as before the taped run's step 2
    _, _, fresh = e.loss()
    assert [s.data for s in scores] == pytest.approx([s.data for s in fresh], rel=1e-12)

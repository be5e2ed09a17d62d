"""Tape.backward passes over runs of instructions whose grad is 0 (core/replay.pxi: _skip_regions).

Adding a zero to a grad leaves it as it was, with two exceptions the skip must respect:
-0.0 + +0.0 is +0.0, and a zero grad times an inf or nan partial is nan. Every test here
compares with eager, bit for bit and sign of zero included; the twin computes every zero,
so it passes them by construction and keeps the tests honest about what eager gives.
"""
import math
import random

import pytest


def bits(x):
    return (math.copysign(1.0, x), x) if x == x else "nan"


def dead_neurons(V, xs, w_bad=None):
    """Sums of 12 products under a relu each (runs of 13 instructions), the odd ones
    dead (w_bad, if given, is the first weight of the first dead one); every sum is held,
    as a user might hold them."""
    rng = random.Random(5)
    ws = [[V(rng.uniform(-1, 1)) for _ in xs] for _ in range(6)]
    if w_bad is not None:
        ws[1][0] = V(w_bad)
    sums = [sum((w * x for w, x in zip(row, xs)), V(-40.0 if j % 2 else 0.5))
            for j, row in enumerate(ws)]
    acts = [s.relu() for s in sums]
    root = sum(a * a for a in acts) + xs[0]
    return root, [p for row in ws for p in row], sums


def replayed_and_eager(engine, build):
    """build() makes a graph and returns (root, the nodes to read): their grads (bits)
    after a Tape's forward and backward, and after eager backward on a second build."""
    results = []
    for use_tape in (True, False):
        root, watched = build()
        if use_tape:
            tape = engine.Tape(root)
            tape.forward()
            tape.backward()
        else:
            root.backward()
        results.append([bits(v.grad) for v in watched])
    return results


def run(engine, values, old_grad=0.0, w_bad=None):
    """The Tape's grads and eager's for the same graph and leaf grads."""
    def build():
        xs = [engine.Value(v) for v in values]
        root, params, held = dead_neurons(engine.Value, xs, w_bad)
        for v in xs + params:
            v.grad = old_grad
        return root, xs + params + held
    return replayed_and_eager(engine, build)


@pytest.mark.parametrize("old_grad", [0.0, -0.0, 1.5])
def test_dead_runs_give_eager_grads_and_signed_zeros(engine, old_grad):
    rng = random.Random(1)
    values = [rng.uniform(-2, 2) for _ in range(12)]
    ours, eager = run(engine, values, old_grad)
    assert ours == eager


@pytest.mark.parametrize("bad, x0", [(math.inf, -1.0), (-math.inf, 1.0), (math.nan, 1.0)])
def test_an_inf_or_nan_under_a_dead_relu_makes_eagers_nan_grads(engine, bad, x0):
    """A dead neuron whose sum is -inf or nan: inf * 0 is nan in eager; no skipping it."""
    values = [x0] + [1.0] * 11
    ours, eager = run(engine, values, w_bad=bad)
    assert ours == eager
    assert "nan" in eager


def test_a_log_under_a_dead_relu_passes_its_inf_slope(engine):
    """log's slope 1/x overflows to inf at the smallest float, where log is finite: times
    a zero grad, nan. LOG is never inside a skipped run."""
    def build():
        x = engine.Value(5e-324)
        ws = [engine.Value(0.25 * i) for i in range(10)]
        s = sum((w * x.log() for w in ws), engine.Value(-1e6))
        return s.relu() + 1.0, [x] + ws
    results = replayed_and_eager(engine, build)
    assert results[0] == results[1]
    assert results[1][0] == "nan"


def test_demo_steps_with_mostly_dead_samples_equal_eager(engine, nn):
    """Training moves most samples past their margin: later steps skip most of the tape."""
    random.seed(3)
    model = nn.MLP(2, [8, 8, 1])
    rng = random.Random(4)
    data = [([rng.uniform(-1, 1), rng.uniform(-1, 1)], rng.choice((-1, 1))) for _ in range(20)]

    def loss():
        scores = [model([engine.Value(a) for a in x]) for x, _ in data]
        return sum((1 + -y * s).relu() for (_, y), s in zip(data, scores)) * (1.0 / len(data))

    tape = engine.Tape(loss())
    for step in range(15):
        model.zero_grad()
        got = tape.forward()
        tape.backward()
        grads = [bits(p.grad) for p in model.parameters()]
        model.zero_grad()
        fresh = loss()
        fresh.backward()
        assert got == fresh.data
        assert grads == [bits(p.grad) for p in model.parameters()]
        for p in model.parameters():
            p.data -= 0.5 * p.grad


def sums_with_their_own_terms(V, xs, seed):
    """Running sums whose acc is also a factor of the term (s + s*x, s + x*s, s + s*s),
    between plain terms and tanh, some held: forward's loop for a sum must stop or go on
    exactly where the general loop would."""
    r = random.Random(seed)
    s = xs[0].relu() if seed % 2 else xs[0]
    held = []
    for i in range(1, len(xs)):
        c = r.random()
        if c < 0.3:
            s = s + s * xs[i]
        elif c < 0.5:
            s = s + xs[i] * s
        elif c < 0.6:
            s = s + s * s
        elif c < 0.7:
            s = s.tanh()
            held.append(s)
        else:
            s = s + xs[i] * xs[i - 1]
        if r.random() < 0.1:
            held.append(s)
    return s, held


@pytest.mark.parametrize("seed", range(40))
def test_sums_whose_acc_is_a_factor_replay_as_eager(engine, seed):
    data = [random.Random(seed).uniform(-1.2, 1.2) for _ in range(2 + seed)]
    xs = [engine.Value(d) for d in data]
    root, held = sums_with_their_own_terms(engine.Value, xs, seed)
    tape = engine.Tape(root)
    new = [0.9 * d + 0.01 for d in data]
    for v, d in zip(xs, new):
        v.data = d
    out = tape.forward()
    tape.backward()
    fresh = [engine.Value(d) for d in new]
    root2, held2 = sums_with_their_own_terms(engine.Value, fresh, seed)
    root2.backward()
    assert [bits(out)] + [bits(h.data) for h in held] == \
        [bits(root2.data)] + [bits(h.data) for h in held2]
    assert [bits(v.grad) for v in xs + held] == [bits(v.grad) for v in fresh + held2]


def test_an_inf_below_a_long_dead_run_of_adds(engine):
    """A dead relu above thousands of ADDs whose bottom is inf * inf (tanh takes it to 1):
    no run holding the inf is skipped (x.grad is inf * 0, nan), and backward does not rescan the
    run at every ADD (_run_finite keeps what it has scanned: else the work is quadratic)."""
    def build():
        x = engine.Value(math.inf)
        cs = [engine.Value(1e-9) for _ in range(5000)]
        v = (x * x).tanh()
        for c in cs:
            v = v + c
        return (v + -1e9).relu() + 1.0, [x] + cs[::500]
    results = replayed_and_eager(engine, build)
    assert results[0] == results[1]
    assert results[1][0] == "nan"


def test_grads_left_by_an_eager_backward_restart_from_zero(engine):
    """A graph backpropagated eagerly, then recorded: its op nodes' grads seed the Tape, and
    backward restarts every one from 0, the skipped ones too (backward zeroes only what the
    last backward wrote, and the first one all of them)."""
    V = engine.Value
    xs = [V(0.1 * i - 0.3) for i in range(12)]
    root, _, sums = dead_neurons(V, xs)
    for _ in range(2):
        root.backward()                     # twice: every op node's grad is now 2x its own
    assert any(s.grad == 0.0 for s in sums) and any(s.grad != 0.0 for s in sums)
    tape = engine.Tape(root)
    for v in xs:
        v.grad = 0.0
    tape.backward()
    got = [bits(v.grad) for v in list(tape.nodes) if v._prev]
    for v in tape.nodes:
        v.grad = 0.0
    root.backward()
    assert got == [bits(v.grad) for v in list(tape.nodes) if v._prev]

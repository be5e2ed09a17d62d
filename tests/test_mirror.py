"""The twin mirrors the core: on the same graph both Tapes compile the same program.

Each builder makes a graph from a Value class and returns (root, held, inputs): held are
intermediate nodes the caller keeps (a held node changes reference counts, which the
compiled core reads, and must not change the program); inputs are its leaves, each
built as a constant + shift.
"""
import random

import pytest

from micrograd import _engine, _pure

FMA = 11


def shared_products(V, shift=0.0):
    xs = [V(0.5 + i + shift) for i in range(4)]
    p = xs[0] * xs[1]                   # used twice: must not fuse
    root = p + xs[2] + p * xs[3] + xs[0] * xs[0]
    return root, [], xs


def held_intermediate(V, shift=0.0):
    b, w, x = V(0.3 + shift), V(-1.2 + shift), V(2.0 + shift)
    prod = w * x
    held = b + prod                     # the user keeps both the sum and the product
    root = held * held + 1
    return root, [prod, held], [b, w, x]


def neuron_sums(V, shift=0.0):
    rng = random.Random(7)
    ws = [V(rng.uniform(-1, 1) + shift) for _ in range(6)]
    xs = [V(rng.uniform(-1, 1) + shift) for _ in range(6)]
    bias = V(0.1 + shift)
    act = sum((w * x for w, x in zip(ws, xs)), bias).relu()
    root = act * act + (ws[0] * xs[1]).tanh()
    return root, [act], ws + xs + [bias]


def relu_kinks(V, shift=0.0):
    a, b = V(0.0 + shift), V(-2.0 + shift)      # shifted, a's relus move off the kink
    root = (a.relu() + (a * b).relu() + (b * -1).relu()) * (a + 1).relu()
    return root, [], [a, b]


def powers(V, shift=0.0):
    a, b = V(1.5 + shift), V(2.0 + shift)
    root = a ** 2 + a ** -1.5 + a ** b + (2 ** a) / b + (a - b) ** 3 + a.exp().log()
    return root, [], [a, b]


def mlp_loss(V, shift=0.0):
    rng = random.Random(3)
    w1 = [[V(rng.uniform(-1, 1) + shift) for _ in range(2)] for _ in range(3)]
    w2 = [V(rng.uniform(-1, 1) + shift) for _ in range(3)]
    total = V(0.0)
    for x0, x1, y in [(0.5, -1.0, 1), (-0.3, 0.8, -1), (1.2, 0.1, 1)]:
        hidden = [(w[0] * x0 + w[1] * x1).relu() for w in w1]
        score = sum(wi * h for wi, h in zip(w2, hidden))
        total = total + (1 + -y * score).relu()
    root = total * (1.0 / 3) + 1e-4 * sum(p * p for row in w1 for p in row)
    return root, [total], [p for row in w1 for p in row] + w2


GRAPHS = [shared_products, held_intermediate, neuron_sums, relu_kinks, powers, mlp_loss]


@pytest.mark.parametrize("build", GRAPHS, ids=lambda f: f.__name__)
def test_both_cores_compile_the_same_program(build):
    programs = []
    for core in (_engine, _pure):
        root, held, _ = build(core.Value)
        tape = core.Tape(root)
        programs.append((len(tape), len(tape.leaves), tape.instructions()))
        assert tape.n_instructions == len(tape.instructions())
    assert programs[0] == programs[1]


def test_a_held_product_is_fused_like_any_other():
    for core in (_engine, _pure):
        root, (prod, held), _ = held_intermediate(core.Value)
        ops = [op for op, *_ in core.Tape(root).instructions()]
        # b + w*x and held*held + 1: two FMAs, though the user holds w*x
        assert ops == [FMA, FMA], (core.__name__, ops)


def test_shared_products_are_not_fused():
    for core in (_engine, _pure):
        root, _, _ = shared_products(core.Value)
        program = core.Tape(root).instructions()
        # p = x0*x1 feeds two ADDs; p*x3 and x0*x0 each feed one ADD right after them
        assert [op for op, *_ in program].count(FMA) == 2, (core.__name__, program)


@pytest.mark.parametrize("build", GRAPHS, ids=lambda f: f.__name__)
def test_replays_give_eagers_bits_in_both_cores(build):
    """Record, move the inputs, replay: the same floats as an eager graph built from the
    moved inputs, in both cores."""
    results = []
    for core in (_engine, _pure):
        root, held, inputs = build(core.Value)
        tape = core.Tape(root)
        for x in inputs:
            x.data += 0.125
        out = tape.forward()
        tape.backward()
        results.append((out, [v.data for v in held], [v.grad for v in held],
                        [x.grad for x in inputs]))
        root, held, inputs = build(core.Value, shift=0.125)
        root.backward()
        results.append((root.data, [v.data for v in held], [v.grad for v in held],
                        [x.grad for x in inputs]))
    assert results[0] == results[1] == results[2] == results[3]

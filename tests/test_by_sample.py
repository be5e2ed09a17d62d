"""benchmarks/by_sample.py: the reorder behind tape_pass.c's runs shape (the floor of a
replay batched by sample) finds the per-sample repetition and keeps every sum's order, so
the reordered program computes what the recorded one does, bit for bit."""
import sys
from pathlib import Path

import pytest

from micrograd.demo import Demo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import by_sample  # noqa: E402

ADD, MUL, RELU, FMA = 1, 2, 5, 11      # op codes (micrograd/_engine.pxd)


def replay(code, leaves, values):
    """Forward and backward over a program of ADD, MUL, RELU and FMA, one instruction at a
    time as Tape replays it: (every slot's value, every slot's grad)."""
    n_slots = max(max(ins[1:]) for ins in code) + 1
    val = list(values) + [0.0] * (n_slots - len(values))
    for k, (op, x, y, z) in enumerate(code):
        a, b = val[x], val[y]
        val[leaves + k] = (a + b * val[z] if op == FMA else a + b if op == ADD
                           else a * b if op == MUL else max(a, 0.0))
    grd = [0.0] * n_slots
    grd[leaves + len(code) - 1] = 1.0
    for k in range(len(code) - 1, -1, -1):
        op, x, y, z = code[k]
        g = grd[leaves + k]
        if op == FMA:
            grd[x] += g
            grd[y] += val[z] * g
            grd[z] += val[y] * g
        else:
            dx = 1.0 if op == ADD else val[y] if op == MUL else float(val[leaves + k] > 0.0)
            dy = 1.0 if op == ADD else val[x] if op == MUL else 0.0
            grd[x] += dx * g
            grd[y] += dy * g
    return val, grd


@pytest.fixture(scope="module")
def program():
    d = Demo("cython", n_samples=12, hidden=(4, 3))
    tape = d.Tape(d.loss()[0])
    return tape.instructions(), [v.data for v in tape.leaves]


def test_finds_one_repetition_per_sample(program):
    code, values = program
    new, start, reps, period = by_sample.batched(code, len(values))
    # per sample: 4 neurons of 2 FMAs and a relu, 3 of 4 FMAs and a relu, the score's 3
    # FMAs, the loss term's FMA and relu, and its add to the sum of losses
    assert (reps, period) == (12, 4 * 3 + 3 * 5 + 3 + 2 + 1)
    assert start + reps * period <= len(code)
    assert sorted(new) != sorted(code)      # output slots renumbered, ops the same
    assert sorted(ins[0] for ins in new) == sorted(ins[0] for ins in code)


def test_reordered_program_is_bit_identical(program):
    code, values = program
    new, start, reps, period = by_sample.batched(code, len(values))
    leaves = len(values)
    val, grd = replay(code, leaves, values)
    val2, grd2 = replay(new, leaves, values)
    assert val2[leaves + len(new) - 1] == val[leaves + len(code) - 1]     # the loss
    assert grd2[:leaves] == grd[:leaves]                                    # every leaf's grad
    assert sorted(val2[leaves:leaves + len(new)]) == sorted(val[leaves:leaves + len(code)])


def test_refuses_a_reorder_that_changes_a_sums_order():
    # slot 0 is read twice per repetition (by j = 0 and j = 1): run j-major, its grad would
    # get repetition 2's second read before repetition 0's first (a different float sum)
    code = []
    for r in range(4):
        base = 2 + 2 * r
        code += [(MUL, 0, 1, 0), (MUL, 0, base, 0)]
    assert by_sample.reorder(code, 2 + 2 * 4, 0, 4, 2) is None
    assert by_sample.reorder(code, 2 + 2 * 4, 0, 1, 2) is not None     # one repetition: as is

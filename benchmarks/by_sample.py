"""The Tape program reordered to run sample by sample in step: the floor of a batched replay.

A recorded Tape runs one instruction per node. On the demo, most of its program is the
same stretch of instructions once per sample (the MLP and that sample's loss term), each
repetition reading the same weights and its own inputs and partial results. A replay could
run each instruction of that stretch for all samples in one tight loop (a "run"), with no
decoding per node, the neurons' sums no longer serial chains, and a weight's grad summed
in a register. tape_pass.c's runs shape measures what that design would cost in bare C;
this module finds the repetition and writes the reordered program for it.

The reorder keeps a replay bit-identical: every slot is read and added to by the same
instructions in the same relative order as in the recorded program (the order a float
sum depends on), which `reorder` checks for every slot before it is used.
"""
import array

FMA = 11    # the fused multiply-add's op code (micrograd/_engine.pxd)


def operands(ins):
    """The slots instruction (op, x, y, z) reads: z only for an FMA."""
    op, x, y, z = ins
    return (x, y, z) if op == FMA else (x, y)


def period(code):
    """The period P and the stretch [a, b) of the program's longest run of op codes that
    repeat every P instructions (ops[k] == ops[k + P] for k in [a, b - P))."""
    ops = [ins[0] for ins in code]
    n, best = len(ops), (0, 0, 0)
    mid = n // 2
    for p in range(1, n // 3):
        if ops[mid:mid + p] != ops[mid + p:mid + 2 * p]:
            continue
        a, b = mid, mid + p
        while a > 0 and ops[a - 1] == ops[a - 1 + p]:
            a -= 1
        while b + p < n and ops[b] == ops[b + p]:
            b += 1
        if b + p - a > best[2] - best[1]:
            best = (p, a, b + p)
    return best


def reorder(code, leaves, start, reps, p):
    """The program with repetitions start + r*p + j (r < reps, j < p) run j-major (all r
    of j, then j + 1), output slots renumbered to match; None unless every slot keeps the
    relative order of the instructions that touch it, and every run (one j, r from 1) reads
    slots that move by a fixed stride from one r to the next."""
    n = len(code)
    order = (list(range(start)) + [start + r * p + j for j in range(p) for r in range(reps)]
             + list(range(start + reps * p, n)))
    pos = [0] * n
    for i, k in enumerate(order):
        pos[k] = i
    end = leaves + n            # slots past the op nodes' are constants: never summed into
    last = {}                   # slot: the latest instruction that read or wrote it
    for k, ins in enumerate(code):
        for t in operands(ins):
            if t >= end:
                continue
            before = last.get(t, t - leaves if t >= leaves else None)
            if before is not None and before != k and pos[before] >= pos[k]:
                return None
            last[t] = k
    new = [(op, *(leaves + pos[t - leaves] if leaves <= t < end else t for t in (x, y, z)))
           for op, x, y, z in (code[k] for k in order)]
    for j in range(p):
        run = new[start + j * reps + 1:start + (j + 1) * reps]
        for f in (1, 2, 3):
            step = run[1][f] - run[0][f] if len(run) > 1 else 0
            if any(run[r][f] != run[0][f] + r * step for r in range(len(run))):
                return None
    return new


def batched(code, leaves):
    """(program, start, reps, period) for the longest repetition that reorders, or None."""
    p, a, b = period(code)
    for start in range(a, a + p) if p else ():
        reps = (b - start) // p
        if reps < 3:
            break
        new = reorder(code, leaves, start, reps, p)
        if new is not None:
            return new, start, reps, p
    return None


def write_program(path, head, values, code):
    """A program as tape_pass.c reads it: the int64 header (leaves, instructions, slots,
    then the runs shape's start, reps and period), the leaves' data (float64), the
    instructions (4 x int32 each), native order."""
    with open(path, "wb") as f:
        f.write(array.array("q", head).tobytes())
        f.write(array.array("d", values).tobytes())
        f.write(array.array("i", [v for ins in code for v in ins]).tobytes())


def write(path, code, values, slots):
    """The program reordered for tape_pass.c's runs shape; returns the repetition found."""
    found = batched(code, len(values))
    if found is None:
        raise ValueError("the program has no repetition that runs sample by sample")
    new, start, reps, p = found
    write_program(path, [len(values), len(new), slots, start, reps, p], values, new)
    return {"start": start, "reps": reps, "period": p}

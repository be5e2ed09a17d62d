"""Builds of the compiled core compared in one process: the demo's Tape replayed by each in
turn (or, with --eager, the demo's eager step), round after round, with per-round ratios
against the first build.

    git worktree add /tmp/a REV_A && (cd /tmp/a && python setup.py build_ext --inplace)
    git worktree add /tmp/b REV_B && (cd /tmp/b && python setup.py build_ext --inplace)
    PYTHONPATH=src python benchmarks/ab_builds.py /tmp/a/src/micrograd /tmp/b/src/micrograd
    PYTHONPATH=src python benchmarks/ab_builds.py --eager --rounds 20 --replays 5 /tmp/a/... /tmp/b/...
    PYTHONPATH=src python benchmarks/ab_builds.py --train 10 --replays 50 /tmp/a/... /tmp/b/...

Each folder holds a built `_engine*.so`; each is loaded under a name of its own, so the
builds share one process, one heap and one moment of the machine. On these shared VMs the
speed of the whole machine drifts by up to 2x over minutes: separate processes run one
after the other can then show a difference that is the machine's. A build's ratio is the
median of its per-round ratios to the first build, each round timing every build within
a fraction of a second. Prints medians of process CPU time per replay (forward, backward;
eager: the loss built, `model.zero_grad()` + `backward()`, the graph dropped) and those
ratios. Models and inputs come from micrograd.demo, as in the benchmark's rows.
"""
import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from micrograd import demo as _demo

clock = time.process_time_ns


def load(i, folder):
    """The _engine built in folder, imported as ab<i>._engine (its init symbol is the same)."""
    (so,) = Path(folder).glob("_engine*.so")
    spec = importlib.util.spec_from_file_location(f"ab{i}._engine", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_model(engine):
    """The demo's data and seeded model on engine's Value."""
    X, y = _demo.moons()                # seeds the RNGs the model then draws from, as Demo
    return X, y, _demo.nn_module(engine.Value).MLP(2, [16, 16, 1])


def tape_replay(engine, train=0):
    """A replay of the demo's loss recorded in engine's Tape, timed: (forward, backward) ns.
    With train, the replays are training steps 0..train-1 from the seeded model, over and
    over (SGD at the demo's rates, untimed): the states of the benchmark's timed steps,
    where most samples already meet their margin."""
    X, y, model = demo_model(engine)
    tape = engine.Tape(_demo.notebook_loss(engine.Value, model, X, y)[0])
    params = model.parameters()
    start = [p.data for p in params]
    step = 0

    def replay():
        nonlocal step
        if train:
            if step % train == 0:
                for p, v in zip(params, start):
                    p.data = v
            for p in params:
                p.grad = 0.0
        t0 = clock()
        tape.forward()
        t1 = clock()
        tape.backward()
        t2 = clock()
        if train:
            lr = _demo.learning_rate(step % train)
            for p in params:
                p.data -= lr * p.grad
            step += 1
        return {"forward": t1 - t0, "backward": t2 - t1}
    return replay


def eager_step(engine):
    """The demo's eager step on engine's Value, timed (the update left out: it is nn.py's
    Python loop, the same for every build): (forward, backward, free) ns."""
    X, y, model = demo_model(engine)

    def step():
        t0 = clock()
        total = _demo.notebook_loss(engine.Value, model, X, y)[0]
        t1 = clock()
        model.zero_grad()
        total.backward()
        t2 = clock()
        del total
        return {"forward": t1 - t0, "backward": t2 - t1, "free": clock() - t2}
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="folders holding a built _engine*.so; the first is the base")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--replays", type=int, default=50, help="replays per build per round")
    ap.add_argument("--eager", action="store_true", help="time the eager step, not the Tape's replay")
    ap.add_argument("--train", type=int, default=0, metavar="K",
                    help="Tape: replay training steps 0..K-1 (a multiple of K replays per round)")
    args = ap.parse_args(argv)
    runs = [eager_step(load(i, b)) if args.eager else tape_replay(load(i, b), args.train)
            for i, b in enumerate(args.builds)]
    phases = ("forward", "backward", "free") if args.eager else ("forward", "backward")
    times = [{ph: [] for ph in phases} for _ in runs]
    for r in range(args.rounds):
        order = range(len(runs)) if r % 2 == 0 else reversed(range(len(runs)))
        for i in order:
            each = [runs[i]() for _ in range(args.replays)]
            for ph in phases:
                times[i][ph].append(statistics.median(t[ph] for t in each))
    print(f"Python {sys.version.split()[0]}; {args.rounds} rounds x {args.replays} "
          f"{'steps' if args.eager else 'replays'}; process CPU time, medians; ratio: median of "
          "per-round ratios to the first build")
    for b, t in zip(args.builds, times):
        cells = []
        for ph in phases:
            ratio = statistics.median(x / y for x, y in zip(t[ph], times[0][ph]))
            cells.append(f"{ph} {statistics.median(t[ph]) / 1e3:7.1f} us ({ratio:.2f}x)")
        print(f"{b}: " + ", ".join(cells))


if __name__ == "__main__":
    main()

"""Builds of the compiled core compared in one process: the demo's Tape replayed by each in
turn, round after round, with per-round ratios against the first build.

    git worktree add /tmp/a REV_A && (cd /tmp/a && python setup.py build_ext --inplace)
    git worktree add /tmp/b REV_B && (cd /tmp/b && python setup.py build_ext --inplace)
    PYTHONPATH=src python benchmarks/ab_builds.py /tmp/a/src/micrograd /tmp/b/src/micrograd

Each folder holds a built `_engine*.so`; each is loaded under a name of its own, so the
builds share one process, one heap and one moment of the machine. On these shared VMs the
speed of the whole machine drifts by up to 2x over minutes: separate processes run one
after the other can then show a difference that is the machine's. A build's ratio is the
median of its per-round ratios to the first build, each round timing every build within
a fraction of a second. Prints medians of process CPU time per replay (forward, backward)
and those ratios. Models and inputs come from micrograd.demo, as in the benchmark's rows.
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


def demo_tape(engine):
    """The demo's loss (seeded model, the moons data) recorded in engine's Tape."""
    X, y = _demo.moons()                # seeds the RNGs the model then draws from, as Demo
    model = _demo.nn_module(engine.Value).MLP(2, [16, 16, 1])
    total, _, _ = _demo.notebook_loss(engine.Value, model, X, y)
    return engine.Tape(total)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", help="folders holding a built _engine*.so; the first is the base")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--replays", type=int, default=50, help="replays per build per round")
    args = ap.parse_args(argv)
    tapes = [demo_tape(load(i, b)) for i, b in enumerate(args.builds)]
    times = [{"forward": [], "backward": []} for _ in tapes]
    for r in range(args.rounds):
        order = range(len(tapes)) if r % 2 == 0 else reversed(range(len(tapes)))
        for i in order:
            fwd, bwd = [], []
            for _ in range(args.replays):
                t0 = clock()
                tapes[i].forward()
                t1 = clock()
                tapes[i].backward()
                fwd.append(t1 - t0)
                bwd.append(clock() - t1)
            times[i]["forward"].append(statistics.median(fwd))
            times[i]["backward"].append(statistics.median(bwd))
    print(f"Python {sys.version.split()[0]}; {args.rounds} rounds x {args.replays} replays; "
          "process CPU time, medians; ratio: median of per-round ratios to the first build")
    for b, t in zip(args.builds, times):
        cells = []
        for ph in ("forward", "backward"):
            ratio = statistics.median(x / y for x, y in zip(t[ph], times[0][ph]))
            cells.append(f"{ph} {statistics.median(t[ph]) / 1e3:7.1f} us ({ratio:.2f}x)")
        print(f"{b}: " + ", ".join(cells))


if __name__ == "__main__":
    main()

"""``python -m micrograd`` (or ``micrograd``): train upstream's moons demo and time it.

Trains ``MLP(2, [16, 16, 1])`` on ``make_moons`` exactly as upstream's demo.ipynb does,
with a progress bar, then times training steps of the compiled core, of its
pure-Python twin and (with ``--upstream-path``) of upstream micrograd 0.1.0, each in
processes of its own, alternately. Needs the ``demo`` extra; ``--plot`` also
needs matplotlib (the ``plot`` extra).
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

if TYPE_CHECKING:
    from micrograd.demo import Demo     # imported when the demo runs, not before

ROUNDS = 5  # timed steps per engine and process in the speed comparison (after a warm-up step)
PROCESSES = 2  # processes per engine, alternating: compiled, twin, twin, compiled


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {n}")
        return n
    return parse


def _seed(text: str) -> int:
    n = _int_at_least(0)(text)
    if n >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32 (numpy's limit), got {n}")
    return n


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="micrograd", description="Train micrograd's moons demo on the compiled engine "
        "and compare its speed with the pure-Python twin (and upstream micrograd).")
    p.add_argument("--steps", type=_int_at_least(1), default=100, help="training steps (default 100)")
    p.add_argument("--samples", type=_int_at_least(2), default=100, help="moons samples (default 100)")
    p.add_argument("--seed", type=_seed, default=1337, help="numpy and random seed (default 1337)")
    p.add_argument("--tape", action="store_true",
                   help="replay a recorded Tape instead of rebuilding the graph")
    p.add_argument("--engine", choices=("cython", "python"), default="cython",
                   help="engine that trains: the compiled core (default) or the pure-Python twin")
    p.add_argument("--plot", metavar="FILE.png", help="write the decision boundary picture to FILE")
    p.add_argument("--no-compare", action="store_true", help="skip the speed comparison")
    p.add_argument("--upstream-path", metavar="DIR", default=os.environ.get("MICROGRAD_UPSTREAM_PATH"),
                   help="a directory holding upstream micrograd 0.1.0 (pip install --target DIR "
                   "micrograd==0.1.0) to time as well (default: $MICROGRAD_UPSTREAM_PATH)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-step lines")
    return p.parse_args(argv)


def plot_decision_boundary(demo: "Demo", path: str, title: str) -> None:
    """Upstream notebook's picture: the model's sign over a grid, with the data on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    X, y, Value, h = demo.X, demo.y, demo.Value, 0.1
    xx, yy = np.meshgrid(np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, h),
                         np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, h))
    scores = [demo.model([Value(a), Value(b)]) for a, b in zip(xx.ravel(), yy.ravel())]
    Z = np.array([s.data > 0 for s in scores]).reshape(xx.shape)
    fig = plt.figure()
    plt.contourf(xx, yy, Z, cmap=plt.cm.Spectral, alpha=0.8)
    plt.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral)
    plt.xlim(xx.min(), xx.max())
    plt.ylim(yy.min(), yy.max())
    plt.title(title)
    fig.savefig(path)
    plt.close(fig)


STEP_SCRIPT = r"""
import gc, importlib.util, json, os, sys
demo_file, engine, n, seed, steps, tape, gc_on = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
if not gc_on:
    gc.disable()
found = importlib.util.find_spec("micrograd")
if engine == "upstream" and os.path.dirname(os.path.dirname(found and found.origin or "")) != os.getcwd():
    sys.exit("no upstream micrograd in " + os.getcwd())
spec = importlib.util.spec_from_file_location("_moons_demo", demo_file)
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)
times, _, _ = demo.Demo(engine, n, seed).timed_steps(steps, tape=bool(tape))
print(json.dumps(times["step"]))
"""


def time_steps(engine: str, args: argparse.Namespace, path: Optional[str] = None) -> list[int]:
    """CPU ns of each timed step of engine, in a process of its own (micrograd.demo's
    Demo.timed_steps, loaded by path so that under upstream, `micrograd` is upstream's)."""
    from micrograd import demo
    cmd = [sys.executable, "-c", STEP_SCRIPT, demo.__file__, engine, str(args.samples), str(args.seed),
           str(ROUNDS), str(int(args.tape and engine != "upstream")), str(int(gc.isenabled()))]
    env = dict(os.environ, PYTHONPATH=path) if path else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=path)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(lines[-1])
    times: list[int] = json.loads(proc.stdout)
    return times


def compare(args: argparse.Namespace) -> tuple[float, float]:
    """Median CPU seconds per step of the compiled core and the twin.

    Each engine runs in processes of its own, alternately, as benchmarks/run.py does:
    timed in one process, the two engines' steps disturb each other's caches and
    allocator state."""
    times: dict[str, list[int]] = {"cython": [], "python": []}
    order = ["cython", "python"]
    for r in range(PROCESSES):
        for engine in (order if r % 2 == 0 else order[::-1]):
            try:
                times[engine] += time_steps(engine, args)
            except RuntimeError as exc:
                raise RuntimeError(f"timing the {engine} engine failed: {exc}") from None
    return statistics.median(times["cython"]) / 1e9, statistics.median(times["python"]) / 1e9


def time_upstream(args: argparse.Namespace) -> Union[float, str]:
    """Median CPU seconds per eager step of upstream micrograd, or an explanation."""
    path = os.path.realpath(args.upstream_path)
    if not os.path.isdir(path):
        return f"upstream path {args.upstream_path!r} is not a directory"
    try:
        return statistics.median(time_steps("upstream", args, path)) / 1e9
    except RuntimeError as exc:
        return f"upstream could not be timed: {exc}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        import numpy  # noqa: F401  (the demo's data)
        import sklearn.datasets  # noqa: F401
        from tqdm import tqdm
    except ImportError as exc:
        sys.exit(f"micrograd: the demo needs numpy, scikit-learn and tqdm "
                 f"({exc.name or exc} is missing): pip install 'micrograd-compiled[demo]'")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit("micrograd: --plot needs matplotlib: pip install 'micrograd-compiled[plot]'")
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
            sys.exit(f"micrograd: --plot {args.plot}: no such directory")
    from micrograd import engine
    from micrograd.demo import Demo
    if args.engine == "cython" and engine.BACKEND != "cython":
        fix = ("MICROGRAD_PURE_PYTHON is set: unset it" if os.environ.get("MICROGRAD_PURE_PYTHON", "")
               not in ("", "0") else "the compiled module could not be imported: reinstall to build it")
        sys.exit(f"micrograd: --engine cython asked for, but micrograd.engine uses the pure-Python "
                 f"twin ({fix}, or pass --engine python)")

    mode = "tape replay" if args.tape else "eager"
    print(f"moons demo: {args.samples} samples, seed {args.seed}, MLP(2, [16, 16, 1]), "
          f"{args.steps} steps, engine {args.engine} ({mode})")
    demo = Demo(args.engine, args.samples, args.seed)
    bar = tqdm(range(args.steps), desc="training", unit="step", disable=True if args.quiet else None)
    every = max(1, args.steps // 10)
    t0 = time.perf_counter()
    for k in bar:
        loss, acc = demo.tape_step(k, args.steps) if args.tape else demo.step(k, args.steps)
        bar.set_postfix_str(f"loss {loss:.6f}, accuracy {acc:.0%}", refresh=False)
        if bar.disable and not args.quiet and (k % every == 0 or k == args.steps - 1):
            print(f"step {k} loss {loss:.8f}, accuracy {acc*100:.1f}%")
    elapsed = time.perf_counter() - t0
    bar.close()
    print(f"final (step {args.steps - 1}): loss {loss:.10f}, accuracy {acc*100:.1f}% "
          f"({elapsed:.2f} s, {elapsed / args.steps * 1e3:.2f} ms/step)")

    if args.plot:
        try:
            plot_decision_boundary(demo, args.plot, f"moons after {args.steps} steps: "
                                   f"loss {loss:.4f}, accuracy {acc*100:.0f}%")
        except (OSError, ValueError) as exc:
            sys.exit(f"micrograd: could not write the plot to {args.plot!r}: {exc}")
        print(f"decision boundary written to {args.plot}")

    if args.no_compare:
        return 0
    gc_state = "gc enabled" if gc.isenabled() else "gc disabled"
    print(f"speed, {mode} steps (median CPU time of {PROCESSES} x {ROUNDS}, after a warm-up; "
          f"Python {platform.python_version()}, {gc_state}):")
    if engine.BACKEND != "cython":
        print("  skipped: the compiled core is not available")
        return 0
    try:
        compiled, twin = compare(args)
    except RuntimeError as exc:
        print(f"  skipped: {exc}")
        return 0
    print(f"  compiled (Cython)   {compiled * 1e3:9.2f} ms/step")
    print(f"  pure-Python twin    {twin * 1e3:9.2f} ms/step "
          "(each engine timed in separate processes, alternately)")
    print(f"  compiled is {twin / compiled:.1f}x faster than the pure-Python twin")
    if not args.upstream_path:
        print("  upstream not installed (pip install --target DIR micrograd==0.1.0, "
              "then --upstream-path DIR)")
        return 0
    upstream = time_upstream(args)
    if isinstance(upstream, str):
        print(f"  {upstream}")
        return 0
    print(f"  upstream 0.1.0      {upstream * 1e3:9.2f} ms/step, eager (no Tape), in a subprocess")
    print(f"  compiled is {upstream / compiled:.1f}x faster than upstream micrograd")
    return 0


if __name__ == "__main__":
    sys.exit(main())

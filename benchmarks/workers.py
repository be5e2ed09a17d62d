"""One benchmark measurement in a fresh process; prints one JSON object on its last line.

Started by benchmarks/run.py, one process per measurement, so that engines never share a
heap, an import or a garbage collector. Every time is process CPU time, in ns. By hand:

    python benchmarks/workers.py demo cython --steps 10
    python benchmarks/workers.py demo upstream --steps 2
    python benchmarks/workers.py demo jax-jit --steps 3
    python benchmarks/workers.py jit-whole 10 --mem-gib 4
    python benchmarks/workers.py scale cython dag 1000000 --reps 3
    python benchmarks/workers.py memory tape 1000000
    python benchmarks/workers.py c benchmarks/_work/demo_step --seconds 0.5
    python benchmarks/workers.py program benchmarks/_work/demo.prog --runs benchmarks/_work/demo.prog.runs
    python benchmarks/workers.py loops benchmarks/_work/tape_pass runs:34239:benchmarks/_work/demo.prog.runs

Tasks:
  demo ENGINE          the moons demo step, per phase (micrograd.demo.Demo.timed_steps);
                       ENGINE: cython, tape (Tape replay), python (the twin), upstream,
                       upstream-nogc (micrograd 0.1.0, see upstream.py), torch (0-d tensors);
                       tape-optim (the bare Tape + SGD loop), and peers.py's floats (the
                       forward on plain floats), autograd, jax (eager), jax-jit (per sample)
  jit-whole N          trace and compile jax.jit of the whole step at N samples (peers.py)
  c BINARY             the hand-written C step (demo_step.c, built by run.py), same data
  scale ENGINE SHAPE N build, backward and free of one graph of N op nodes; for cython
                       also its Tape's forward and backward (SHAPES below), and with
                       --tape-pass BINARY tape_pass.c over the same graph, paired
  memory ENGINE N      RSS growth per node while building a chain of N nodes; for tape,
                       the growth when that chain is recorded
  program FILE         write the compiled demo's Tape program for tape_pass.c's prog shape
                       (--runs FILE2: and reordered sample by sample for its runs shape)
  loops BINARY SPEC    tape_pass.c on such a program (SPEC prog:N:FILE or runs:N:FILE), per step
"""
import argparse
import array
import gc
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

import by_sample
import peers
import upstream

clock = time.process_time_ns
DEMO_FILE = Path(__file__).resolve().parent.parent / "src" / "micrograd" / "demo.py"


def demo_module(engine):
    """micrograd.demo, after checking which `micrograd` this process imports: upstream's
    (from upstream.py's folder, put first on sys.path) for the upstream engines, ours
    otherwise. Under upstream, demo.py is loaded from this checkout by path."""
    want_upstream = engine.startswith("upstream")
    if want_upstream:
        folder, note = upstream.ensure_upstream()
        if folder is None:
            raise SystemExit(note)
        sys.path.insert(0, str(folder))
    elif engine == "python":
        os.environ["MICROGRAD_PURE_PYTHON"] = "1"
    import micrograd
    if upstream.is_upstream(Path(micrograd.__file__).parents[1]) != want_upstream:
        raise SystemExit(f"wrong micrograd for {engine}: {micrograd.__file__}")
    if not want_upstream:
        import micrograd.demo
        return micrograd.demo
    spec = importlib.util.spec_from_file_location("micrograd_compiled_demo", DEMO_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def info(**extra):
    import micrograd
    return {"micrograd_file": micrograd.__file__, "gc_enabled": gc.isenabled(),
            "gc_threshold": gc.get_threshold(), "rss_bytes": psutil.Process().memory_info().rss,
            **extra}


def tape_optim(demo_mod, steps, warmup, batches=15, seconds=0.25):
    """The bare replayed step: tape.forward(); opt.zero_grad(); tape.backward(); opt.step(),
    the rate set by the notebook's schedule (no accuracy: the C step computes none). Timed
    as demo_step.c times the C step: the step as the mean of a batch of steps with a clock
    read only before and after it (a read costs ~0.6 us of process CPU time, and the C loop
    has none inside), the median of at least `batches` batches spread over `seconds` of
    CPU time, as the C step's batches are (a burst of the machine's noise then moves the
    median of neither); the phases in a run of the same
    steps from the same weights with a clock between them. Every batch and the phases' run
    start from the seeded weights and time the steps after `warmup` untimed ones (the C
    step, too, is timed after thousands of steps)."""
    from micrograd.optim import SGD
    d = demo_mod.Demo("cython")
    total, _, _ = d.loss()
    params = d.model.parameters()
    start = [p.data for p in params]
    tape, opt = d.Tape(total), SGD(params, lr=demo_mod.learning_rate(0))
    group, rate, n = opt.param_groups[0], demo_mod.learning_rate, warmup + steps

    def batch():
        for p, v in zip(params, start):
            p.data = v
        losses = [0.0] * n
        for i in range(warmup):
            losses[i] = tape.forward()
            opt.zero_grad()
            tape.backward()
            group["lr"] = rate(i % 100)
            opt.step()
        t0 = clock()
        for i in range(warmup, n):
            losses[i] = tape.forward()
            opt.zero_grad()
            tape.backward()
            group["lr"] = rate(i % 100)
            opt.step()
        return (clock() - t0) / steps, losses

    def phased():
        for p, v in zip(params, start):
            p.data = v
        marks, losses = [], []
        for i in range(n):
            t0 = clock()
            losses.append(tape.forward())
            t1 = clock()
            opt.zero_grad()
            tape.backward()
            t2 = clock()
            group["lr"] = rate(i % 100)
            opt.step()
            marks.append((t0, t1, t2, clock()))
        return marks[warmup:], losses

    batch()
    marks, losses = phased()
    step_ns, began = [], clock()
    while len(step_ns) < batches or clock() - began < seconds * 1e9:
        ns, again = batch()
        step_ns.append(ns)
        if again != losses:
            raise RuntimeError("the step's batches and the phases' run give different losses")
    times = {"forward": [b - a for a, b, _, _ in marks], "backward": [c - b for _, b, c, _ in marks],
             "update": [d - c for _, _, c, d in marks], "free": [None] * steps, "step": step_ns}
    return times, losses, {"tape_nodes": len(tape)}


def task_demo(args):
    engine = args.engine
    if engine == "upstream-nogc":
        gc.disable()
    demo_mod = demo_module(engine)
    extra, acc = {}, None
    if engine in FUNCTIONAL:
        times, losses, extra = FUNCTIONAL[engine](demo_mod, args)
    else:
        if engine == "torch":
            demo, extra = peers.torch_demo(demo_mod)
        else:
            demo = demo_mod.Demo({"tape": "cython", "upstream-nogc": "upstream"}.get(engine, engine))
        times, losses, acc = demo.timed_steps(args.steps, args.warmup, tape=engine == "tape")
        if engine == "tape":
            extra["tape_nodes"] = len(demo.tape)
    return {"engine": engine, "steps": args.steps, "warmup": args.warmup, "losses": [float(v) for v in losses],
            "ns": {ph: statistics.median(v) if None not in v else None for ph, v in times.items()},
            "raw_step_ns": times["step"], "final_accuracy": acc and float(acc), **info(**extra)}


FUNCTIONAL = {   # engines whose step is not Demo.timed_steps: (demo module, args) -> times, losses, extra
    "tape-optim": lambda m, a: tape_optim(m, a.steps, a.warmup),
    "floats": lambda m, a: peers.floats(m, a.steps, a.warmup, a.free_nodes),
    "autograd": lambda m, a: peers.vjp_peer(m, a.steps, a.warmup, "autograd"),
    "jax": lambda m, a: peers.vjp_peer(m, a.steps, a.warmup, "jax"),
    "jax-jit": lambda m, a: peers.jax_jit(m, a.steps, a.warmup),
}


def task_jit_whole(args):
    return peers.jax_jit_whole(demo_module("python"), args.samples, args.mem_gib)


def task_c(args):
    """Write the seeded data and initial parameters, run the C step, pass on its JSON."""
    demo = demo_module("python").Demo("python")   # only the data and initial parameters
    params = demo.model.parameters()
    fd, path = tempfile.mkstemp(suffix=".txt", prefix="demo_step_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{len(demo.X)}\n")
            for (x0, x1), yi in zip(demo.X, demo.y):
                f.write(f"{float(x0)!r} {float(x1)!r} {float(yi)!r}\n")
            f.write(" ".join(repr(float(p.data)) for p in params) + "\n")
        proc = subprocess.run([args.binary, path, str(args.seconds)], capture_output=True,
                              text=True, check=True)
    finally:
        os.unlink(path)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"engine": "c", "losses": res["losses"], "steps": res["iters_per_batch"] * res["batches"],
            "ns": {ph: res.get("ns_" + ph, 0.0) for ph in ("forward", "backward", "update", "free", "step")}}


def task_loops(args):
    """tape_pass.c on one program shape (prog or runs), as a demo-step row: ns per step."""
    proc = subprocess.run([args.binary, str(args.seconds), args.spec], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"tape_pass exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    (run,) = json.loads(proc.stdout)["runs"]
    ns = {ph: run[key] * run["n"] for ph, key in (("forward", "forward"), ("backward", "backward"),
                                                   ("step", "pass"))}
    return {"engine": run["shape"], "instructions": run["n"], "ns": {**ns, "update": 0.0, "free": 0.0}}


# The program's leaves hold the model after this many training steps: the middle of the timed
# Tape + optim steps (1-10), whose backward skips as many zero-grad runs as at this state.
PROGRAM_STEP = 5


def task_program(args):
    """The demo's Tape as tape_pass.c's prog shape reads it (by_sample.write_program). With
    --runs, also the same program reordered to run sample by sample (by_sample.py)."""
    d = demo_module("cython").Demo("cython")
    for k in range(PROGRAM_STEP):
        d.step(k)
    total, _, _ = d.loss()
    tape = d.Tape(total)
    code = tape.instructions()
    slots = max(max(ins[1:]) for ins in code) + 1       # fused MULs, the dummy slot
    values = [v.data for v in tape.leaves]
    by_sample.write_program(args.file, [len(values), len(code), slots], values, code)
    runs = by_sample.write(args.runs, code, values, slots) if args.runs else None
    return {"instructions": len(code), "tape_nodes": len(tape), "runs": runs}


# Graphs for the scale task: each returns (root, what must outlive the root, build ns).
def chain(Value, n):
    """z = z * y, n times: a graph n deep."""
    y, z = Value(0.9999999), Value(1.0)
    t0 = clock()
    for _ in range(n):
        z = z * y
    return z, None, clock() - t0


def wide(Value, n):
    """z = z + x over n leaves built beforehand (untimed)."""
    xs = [Value(1.0 + 1e-9 * i) for i in range(n)]
    z = Value(0.0)
    t0 = clock()
    for x in xs:
        z = z + x
    return z, xs, clock() - t0


def dag_picks(n):
    """The random DAG's picks: for spine op j, the index of its earlier spine node r
    (seeded; run.py hands the same picks to tape_pass.c)."""
    rng = random.Random(0)
    return [rng.randrange(i + 1) for i in range(n // 2)]


def dag(Value, n):
    """A random DAG: a spine z = (z + r) * 0.5 whose every add takes a random earlier spine
    node r (the picks are drawn before the clock starts)."""
    picks = dag_picks(n)
    half, z = Value(0.5), Value(1.0)
    spine = [z]
    t0 = clock()
    for i in picks:
        z = (z + spine[i]) * half
        spine.append(z)
    return z, None, clock() - t0


def dot(Value, n):
    """z = z + a_i * b_i over n/4 pairs of leaves built beforehand: about n nodes, half of
    them leaves, each a Value read in forward and written in backward."""
    m = max(1, n // 4)
    a = [Value(1.0 + 1e-6 * i) for i in range(m)]
    b = [Value(1.0 - 1e-6 * i) for i in range(m)]
    z = Value(0.0)
    t0 = clock()
    for x, w in zip(a, b):
        z = z + x * w
    return z, (a, b), clock() - t0


def mlp(Value, n):
    """The demo's loss over enough moons samples for n op nodes (~650 per sample):
    training-shaped, few leaves."""
    from micrograd.demo import Demo
    demo = Demo("cython", n_samples=max(2, -(-n // 650)))
    t0 = clock()
    loss, _, scores = demo.loss()
    return loss, (demo, scores), clock() - t0


SHAPES = {f.__name__: f for f in (chain, wide, dag, dot, mlp)}


def task_scale(args):
    mod = demo_module(args.engine).engine_module(args.engine)
    Tape = mod.Tape if args.engine == "cython" else None
    out = {"engine": args.engine, "shape": args.shape, "n": args.n, "reps": args.reps}
    raw = {ph: [] for ph in ("build", "backward", "free", "tape_forward", "tape_backward",
                             "c_tape_pass", "tape_vs_c")}
    replays = min(20, max(3, 10**6 // args.n))     # at least 3: one replay's median is noise
    for rep in range(args.warmup + args.reps):
        z, keep, t_build = SHAPES[args.shape](mod.Value, args.n)
        t0 = clock()
        z.backward()
        t_backward = clock() - t0
        fwd, bwd = [], []
        if Tape is not None:
            tape = Tape(z)
            tape.forward()      # the first replay touches the fresh arrays: untimed
            tape.backward()
            for _ in range(replays):
                t0 = clock()
                tape.forward()
                t1 = clock()
                tape.backward()
                t2 = clock()
                fwd.append(t1 - t0)
                bwd.append(t2 - t1)
            out["nodes"], out["op_nodes"] = len(tape), len(tape) - len(tape.leaves)
            del tape
            if args.tape_pass and rep >= args.warmup:
                raw["c_tape_pass"].append(c_tape_pass(args.tape_pass, args.shape, args.n, args.seconds))
                raw["tape_vs_c"].append((statistics.median(fwd) + statistics.median(bwd))
                                        / out["op_nodes"] / raw["c_tape_pass"][-1])
        t0 = clock()
        del z
        t_free = clock() - t0
        del keep
        if rep >= args.warmup:
            for ph, t in (("build", [t_build]), ("backward", [t_backward]), ("free", [t_free]),
                          ("tape_forward", fwd), ("tape_backward", bwd)):
                raw[ph] += t
    return {**out, **raw, **info()}


def c_tape_pass(binary, shape, n, seconds):
    """tape_pass.c's forward+backward over the same graph in the Tape's layout, ns per op
    node: run here, right after the Tape's replays, so that the two share a moment of the
    machine (its speed drifts by up to 2x over minutes)."""
    spec = f"{shape}:{n}"
    with tempfile.TemporaryDirectory() as tmp:
        if shape == "dag":              # the same picks as the graph just replayed
            picks = Path(tmp) / "picks.bin"
            picks.write_bytes(array.array("i", dag_picks(n)).tobytes())
            spec += f":{picks}"
        proc = subprocess.run([binary, str(seconds), spec], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"tape_pass exited {proc.returncode}: {proc.stderr.strip()[:200]}")
    return json.loads(proc.stdout)["runs"][0]["pass"]


def task_memory(args):
    demo_mod = demo_module(args.engine)
    Value, Tape, _ = demo_mod.Demo.backend("cython" if args.engine == "tape" else args.engine)
    rss = psutil.Process().memory_info
    y, z = Value(0.9999999), Value(1.0)
    for _ in range(1000):                   # warm the allocator's small pools
        z = z * y
    z = Value(1.0)
    gc.collect()
    before = rss().rss
    for _ in range(args.n):
        z = z * y
    after = rss().rss
    if args.engine == "tape":
        before = after
        tape = Tape(z)
        after = rss().rss
        del tape
    return {"engine": args.engine, "n": args.n, "bytes_per_node": (after - before) / args.n,
            "getsizeof": sys.getsizeof(z), **info()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="task", required=True)
    d = sub.add_parser("demo")
    d.add_argument("engine", choices=("cython", "tape", "python", "upstream", "upstream-nogc", "torch",
                                      *FUNCTIONAL))
    d.add_argument("--steps", type=int, default=3)
    d.add_argument("--warmup", type=int, default=1)
    d.add_argument("--free-nodes", type=int, default=65818, help="floats: nodes whose freeing is the floor")
    j = sub.add_parser("jit-whole")
    j.add_argument("samples", type=int)
    j.add_argument("--mem-gib", type=float, default=4.0)
    c = sub.add_parser("c")
    c.add_argument("binary")
    c.add_argument("--seconds", type=float, default=0.5)
    s = sub.add_parser("scale")
    s.add_argument("engine", choices=("cython", "python"))
    s.add_argument("shape", choices=SHAPES)
    s.add_argument("n", type=int)
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--tape-pass", help="tape_pass.c's binary: also time it on the same graph "
                   "after each timed repetition (cython: chain, wide, dag)")
    s.add_argument("--seconds", type=float, default=0.5, help="tape_pass.c's time per run")
    m = sub.add_parser("memory")
    m.add_argument("engine", choices=("cython", "tape", "python", "upstream"))
    m.add_argument("n", type=int)
    lo = sub.add_parser("loops")
    lo.add_argument("binary")
    lo.add_argument("spec", help="tape_pass.c's prog:N:FILE or runs:N:FILE")
    lo.add_argument("--seconds", type=float, default=0.5)
    g = sub.add_parser("program")
    g.add_argument("file")
    g.add_argument("--runs", help="also write the program reordered sample by sample here")
    args = p.parse_args(argv)
    task = {"demo": task_demo, "c": task_c, "scale": task_scale, "memory": task_memory,
            "jit-whole": task_jit_whole, "program": task_program, "loops": task_loops}[args.task]
    print(json.dumps({"task": args.task, **task(args)}))


if __name__ == "__main__":
    main()

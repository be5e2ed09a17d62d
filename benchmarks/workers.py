"""One benchmark measurement in a fresh process; prints one JSON object on its last line.

Started by benchmarks/run.py, one process per measurement, so that engines never share
a heap, an import or a garbage collector. Can be run by hand too:

    python benchmarks/workers.py demo cython --steps 10
    PYTHONPATH=benchmarks/_work/upstream python benchmarks/workers.py \\
        --upstream-dir benchmarks/_work/upstream demo upstream
    python benchmarks/workers.py scale cython chain 1000000 --reps 3
    python benchmarks/workers.py memory cython 1000000
    python benchmarks/workers.py tape-scale 1000000 --reps 5
    python benchmarks/workers.py c --binary benchmarks/_work/demo_step --seconds 0.5

Tasks:
  demo ENGINE      the moons demo step, timed per phase; ENGINE is one of
                   cython, python (the twin), tape (Tape replay, compiled),
                   upstream, upstream-nogc (micrograd 0.1.0 from --upstream-dir),
                   torch (0-d float64 tensors)
  c                the hand-written C step (benchmarks/demo_step.c, already built)
  scale ENGINE SHAPE N    build / backward / free of a chain or a wide sum of N nodes
  memory ENGINE N  RSS growth per node while building a chain of N nodes
  tape-scale N [--shape mlp|dot]  Tape forward()+backward() on a graph of about N nodes
  pagefault MIB    this machine's cost of first touching fresh memory, per 4 KiB page
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

pc = time.perf_counter_ns

UPSTREAM_ENGINES = ("upstream", "upstream-nogc")
ALL_DEMO_ENGINES = ("cython", "python", "tape", "torch") + UPSTREAM_ENGINES


# ---------------------------------------------------------------------------------
# Which micrograd did we import? Never trust PYTHONPATH blindly.
# ---------------------------------------------------------------------------------
def _under(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def import_engine(engine, upstream_dir=None):
    """Return (Value, MLP or None, info dict) for engine, verified to be the right code."""
    import micrograd
    info = {"micrograd_file": micrograd.__file__}
    if engine in UPSTREAM_ENGINES or engine == "upstream-memory":
        import micrograd.engine
        import micrograd.nn
        if upstream_dir is None or not _under(micrograd.__file__, upstream_dir):
            raise SystemExit(f"expected upstream micrograd from {upstream_dir}, "
                             f"imported {micrograd.__file__}")
        if hasattr(micrograd.engine, "BACKEND") or not hasattr(micrograd.engine.Value(1.0), "_backward"):
            raise SystemExit(f"{micrograd.__file__} does not look like upstream micrograd 0.1.0")
        info["upstream_dir"] = upstream_dir
        return micrograd.engine.Value, micrograd.nn.MLP, info
    if upstream_dir is not None and _under(micrograd.__file__, upstream_dir):
        raise SystemExit("upstream micrograd shadows this package; unset PYTHONPATH")
    import micrograd.engine
    info["backend"] = micrograd.engine.BACKEND
    if engine in ("cython", "tape"):
        if micrograd.engine.BACKEND != "cython":
            raise SystemExit("the compiled core is not active (MICROGRAD_PURE_PYTHON set, "
                             "or micrograd._engine not built)")
        from micrograd import _engine as mod
    elif engine == "python":
        from micrograd import _pure as mod
    else:
        raise SystemExit(f"unknown engine {engine!r}")
    info["engine_module"] = mod.__name__
    return mod.Value, None, info


def base_info():
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gc_enabled": gc.isenabled(),
        "gc_threshold": list(gc.get_threshold()),
        "pid": os.getpid(),
    }


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------
# The moons demo step.
# ---------------------------------------------------------------------------------
def our_demo():
    """src/micrograd/demo.py, loaded by path: in the upstream worker, the import name
    `micrograd` is upstream's, but the notebook's data and loss are written once, there."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                        "src", "micrograd", "demo.py")
    spec = importlib.util.spec_from_file_location("micrograd_compiled_demo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class UpstreamDemo:
    """The notebook's demo on upstream's Value and MLP (upstream 0.1.0 ships no demo
    module): micrograd.demo's data and loss, with upstream's classes."""

    def __init__(self, Value, MLP):
        self.Value = Value
        self.demo = our_demo()
        self.X, self.y = self.demo.moons()
        self.model = MLP(2, [16, 16, 1])  # draws after the data, as in the notebook

    def loss(self):
        return self.demo.notebook_loss(self.Value, self.model, self.X, self.y)

    def update(self, k):
        for p in self.model.parameters():
            p.data -= (1.0 - 0.9*k/100) * p.grad


def torch_demo():
    """The same demo on PyTorch scalar autograd: every Value is a 0-d float64 tensor.

    The MLP is nn.py itself with torch scalars for Values; parameters are drawn with
    the same random.uniform calls in the same order, so the model and the losses are
    the same as the other engines'."""
    import torch
    torch.set_num_threads(1)   # 0-d tensors never use intra-op threads; keep it explicit
    f64 = torch.float64
    demo = our_demo()

    def parameter(x):
        return torch.tensor(x, dtype=f64, requires_grad=True)

    def tensor(x):
        return torch.tensor(x, dtype=f64)

    class MLP(demo.nn_module(parameter).MLP):
        def zero_grad(self):
            for p in self.parameters():
                p.grad = None      # torch's idiom (optimizer.zero_grad(set_to_none=True))

    class TorchDemo:
        def __init__(self):
            self.X, self.y = demo.moons()
            self.model = MLP(2, [16, 16, 1])

        def loss(self):
            return demo.notebook_loss(tensor, self.model, self.X, self.y)

        def update(self, k):
            lr = 1.0 - 0.9*k/100
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(p.grad, alpha=-lr)

    return TorchDemo(), {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def task_demo(args):
    info = base_info()
    engine = args.engine
    if engine == "upstream-nogc":
        gc.disable()
        info["gc_enabled"] = False
    if engine == "torch":
        demo, extra = torch_demo()
        info.update(extra)
    elif engine in UPSTREAM_ENGINES:
        Value, MLP, extra = import_engine(engine, args.upstream_dir)
        info.update(extra)
        demo = UpstreamDemo(Value, MLP)
    else:
        _, _, extra = import_engine(engine, args.upstream_dir)
        info.update(extra)
        from micrograd.demo import Demo
        demo = Demo(engine="python" if engine == "python" else "cython")

    steps = []
    losses = []
    n_nodes = None
    for i in range(args.warmup + args.steps):
        k = i % 100
        if engine == "tape":
            if demo.tape is None:            # the warm-up step records the tape
                demo.tape_step(k)
                losses.append(None)
                n_nodes = len(demo.tape)
                continue
            # Demo.tape_step, with a clock between the phases
            t0 = pc()
            loss = demo.tape.forward()
            acc = sum(pos == (s.data > 0) for pos, s in zip(demo._positive, demo._scores)) / len(demo.y)
            t1 = pc()
            demo.model.zero_grad()
            demo.tape.backward()
            t2 = pc()
            demo.update(k)
            t3 = pc()
            t4 = t3
        else:
            # Demo.step (or the notebook's loop), with a clock between the phases
            t0 = pc()
            total_loss, acc, scores = demo.loss()
            t1 = pc()
            demo.model.zero_grad()
            total_loss.backward()
            t2 = pc()
            demo.update(k)
            t3 = pc()
            loss = total_loss.item() if engine == "torch" else total_loss.data
            del total_loss, scores           # drop the graph (upstream's cycles wait for the GC)
            t4 = pc()
        losses.append(float(loss))
        if i >= args.warmup:
            steps.append({"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2,
                          "free": t4 - t3, "step": t4 - t0})
    phases = ("forward", "backward", "update", "free", "step")
    out = {"task": "demo", "engine": engine, "warmup": args.warmup, "steps": len(steps),
           "ns": {ph: median([s[ph] for s in steps]) for ph in phases},
           "raw_step_ns": [s["step"] for s in steps], "losses": losses,
           "final_accuracy": float(acc), "rss_bytes": rss_bytes(), **info}
    if n_nodes is not None:
        out["tape_nodes"] = n_nodes
    return out


def task_c(args):
    """Write the seeded data and initial parameters, run the C step, pass on its JSON."""
    from micrograd.demo import Demo
    demo = Demo(engine="python")   # only the data and the initial parameters are used
    fd, path = tempfile.mkstemp(suffix=".txt", prefix="demo_step_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{len(demo.X)}\n")
            for (x0, x1), yi in zip(demo.X, demo.y):
                f.write(f"{float(x0)!r} {float(x1)!r} {float(yi)!r}\n")
            params = demo.model.parameters()
            if len(params) != 337:
                raise SystemExit(f"expected 337 parameters, got {len(params)}")
            f.write(" ".join(repr(float(p.data)) for p in params) + "\n")
        proc = subprocess.run([args.binary, path, str(args.seconds)], capture_output=True,
                              text=True, check=True)
    finally:
        os.unlink(path)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"task": "demo", "engine": "c", "binary": args.binary,
            "ns": {"forward": res["ns_forward"], "backward": res["ns_backward"],
                   "update": res["ns_update"], "free": 0.0, "step": res["ns_step"]},
            "losses": res["losses"], "iters_per_batch": res["iters_per_batch"],
            "batches": res["batches"], "cycle": res["cycle"], **base_info()}


# ---------------------------------------------------------------------------------
# Scaling: ns per node for long chains and wide sums.
# ---------------------------------------------------------------------------------
def task_scale(args):
    Value, _, info = import_engine(args.engine, args.upstream_dir)
    n = args.n

    def once():
        if args.shape == "chain":           # z = z * y, n times: depth n
            xs = None
            y = Value(0.9999999)
            z = Value(1.0)
            t0 = pc()
            for _ in range(n):
                z = z * y
            t1 = pc()
        else:                               # z = x1 + x2 + ... + xn over n prebuilt leaves
            xs = [Value(1.0 + 1e-9 * i) for i in range(n)]
            z = Value(0.0)
            t0 = pc()
            for x in xs:
                z = z + x
            t1 = pc()
        z.backward()
        t2 = pc()
        del z                               # frees the n op nodes (the leaves stay in xs)
        t3 = pc()
        del xs
        return t1 - t0, t2 - t1, t3 - t2

    for _ in range(args.warmup):
        once()
    runs = [once() for _ in range(args.reps)]
    out = {"task": "scale", "engine": args.engine, "shape": args.shape, "n": n,
           "reps": args.reps, "warmup": args.warmup, **info, **base_info()}
    for j, ph in enumerate(("build", "backward", "free")):
        out[ph + "_raw"] = [r[j] / n for r in runs]
        out[ph + "_ns_per_node"] = median(out[ph + "_raw"])
    return out


def task_memory(args):
    engine = args.engine
    if engine == "upstream":
        Value, _, info = import_engine("upstream-memory", args.upstream_dir)
    else:
        Value, _, info = import_engine(engine, args.upstream_dir)
    n = args.n
    y = Value(0.9999999)
    z = Value(1.0)
    for _ in range(1000):                   # warm the allocator's small pools
        z = z * y
    z = Value(1.0)
    gc.collect()
    before = rss_bytes()
    for _ in range(n):
        z = z * y
    after = rss_bytes()
    assert z.data > 0
    return {"task": "memory", "engine": engine, "n": n, "rss_before": before,
            "rss_after": after, "bytes_per_node": (after - before) / n,
            "getsizeof": sys.getsizeof(z),
            **info, **base_info()}


def _tape_graph(Value, shape, n):
    """A graph of about n nodes: 'mlp' is the demo's loss over enough moons samples
    (training-shaped: few leaves, mostly ops); 'dot' is a dot product of two vectors of
    fresh leaves (half the nodes are leaves, each read and written on every replay)."""
    if shape == "dot":
        m = max(1, n // 4)                  # 2m leaves, m products, m sums: ~n nodes
        a = [Value(1.0 + 1e-6 * i) for i in range(m)]
        b = [Value(1.0 - 1e-6 * i) for i in range(m)]
        z = Value(0.0)
        for x, w in zip(a, b):
            z = z + x * w
        return z, (a, b)
    from micrograd.demo import Demo
    demo = Demo("cython", n_samples=max(2, -(-n // 650)))    # ~658 nodes per sample: >= n
    loss, _, scores = demo.loss()
    return loss, (demo, scores)


def task_tape_scale(args):
    Value, _, info = import_engine("cython", args.upstream_dir)
    from micrograd._engine import Tape
    z, keep = _tape_graph(Value, args.shape, args.n)
    tape = Tape(z)
    nodes = len(tape)
    op_nodes = nodes - len(tape.leaves)
    runs = []
    for i in range(args.warmup + args.reps):
        t0 = pc()
        tape.forward()
        t1 = pc()
        tape.backward()
        t2 = pc()
        if i >= args.warmup:
            runs.append((t1 - t0, t2 - t1))
    fwd = median([r[0] for r in runs])
    bwd = median([r[1] for r in runs])
    fb = median([r[0] + r[1] for r in runs])
    return {"task": "tape-scale", "engine": "tape", "shape": args.shape, "n": args.n,
            "nodes": nodes, "op_nodes": op_nodes, "reps": args.reps,
            "forward_ns_per_node": fwd / nodes, "backward_ns_per_node": bwd / nodes,
            "fb_ns_per_node": fb / nodes, "fb_ns_per_op_node": fb / op_nodes,
            "fb_raw": [(r[0] + r[1]) / nodes for r in runs],
            **info, **base_info()}


def task_pagefault(args):
    """Fresh anonymous memory, one write per page: what the OS charges a growing heap,
    with 4 KiB pages and with the huge pages the engine asks for its node chunks."""
    import mmap
    size = args.mib << 20
    huge = getattr(mmap, "MADV_HUGEPAGE", None)

    # private anonymous memory, as the engine maps (Windows' mmap takes no flags)
    kw = {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS} if hasattr(mmap, "MAP_PRIVATE") else {}

    def touch(advice, page):
        buf = mmap.mmap(-1, size, **kw)
        if advice is not None:
            try:
                buf.madvise(advice)
            except OSError:                 # a kernel without transparent huge pages
                buf.close()
                return None
        t0 = pc()
        for off in range(0, size, page):
            buf[off] = 1
        t1 = pc()
        for off in range(0, size, page):    # the same loop over touched pages: the loop's own cost
            buf[off] = 2
        t2 = pc()
        buf.close()
        return ((t1 - t0) - (t2 - t1)) / (size // page)

    # twice each: the second map may reuse memory the VM backs already
    runs = [touch(None, mmap.PAGESIZE) for _ in range(2)]
    huge_runs = [touch(huge, 2 << 20) for _ in range(2)] if huge is not None else None
    if huge_runs is not None and None in huge_runs:
        huge_runs = None
    from micrograd._engine import Value
    return {"task": "pagefault", "mib": args.mib, "page_size": mmap.PAGESIZE,
            "node_bytes": Value.__basicsize__, "ns_per_page": runs,
            "ns_per_huge_page": huge_runs, **base_info()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream-dir", default=None,
                   help="folder holding upstream micrograd 0.1.0 (it must also be on PYTHONPATH)")
    sub = p.add_subparsers(dest="task", required=True)
    d = sub.add_parser("demo")
    d.add_argument("engine", choices=ALL_DEMO_ENGINES)
    d.add_argument("--steps", type=int, default=3)
    d.add_argument("--warmup", type=int, default=1)
    c = sub.add_parser("c")
    c.add_argument("--binary", required=True)
    c.add_argument("--seconds", type=float, default=0.5)
    s = sub.add_parser("scale")
    s.add_argument("engine", choices=("cython", "python"))
    s.add_argument("shape", choices=("chain", "wide"))
    s.add_argument("n", type=int)
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    m = sub.add_parser("memory")
    m.add_argument("engine", choices=("cython", "python", "upstream"))
    m.add_argument("n", type=int)
    t = sub.add_parser("tape-scale")
    t.add_argument("n", type=int)
    t.add_argument("--shape", choices=("mlp", "dot"), default="mlp")
    t.add_argument("--reps", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    f = sub.add_parser("pagefault")
    f.add_argument("mib", type=int)
    args = p.parse_args(argv)
    task = {"pagefault": task_pagefault, "demo": task_demo, "c": task_c, "scale": task_scale, "memory": task_memory,
            "tape-scale": task_tape_scale}[args.task]
    result = task(args)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

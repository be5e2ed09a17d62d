"""The benchmark suite of micrograd, compiled: run it, write RESULTS.md and a chart.

    python benchmarks/run.py                 # full run, < 10 minutes on 2 cores
    python benchmarks/run.py --quick         # seconds: fewer rounds, smaller graphs
    python benchmarks/run.py --out benchmarks/RESULTS.md --chart benchmarks/ratios.png

Every measurement runs in its own process (benchmarks/workers.py), engines alternate
within each round (A B C ... then ... C B A), and every number reported is a median.
Upstream micrograd 0.1.0 is installed by this script into benchmarks/_work/upstream
(gitignored, reused when present) and imported from there alone. See
benchmarks/README.md for what each row means.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKERS = HERE / "workers.py"
C_SOURCE = HERE / "demo_step.c"
PASS_SOURCE = HERE / "node_pass.c"     # the memory system's floor under backward's scaling
UPSTREAM_SPEC = "micrograd==0.1.0"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# Demo-step engines, in the order of a round (odd rounds run it backwards).
ENGINES = ["cython", "tape", "python", "upstream", "upstream-nogc", "torch", "c"]
LABELS = {
    "cython": "micrograd-compiled (Cython)",
    "tape": "micrograd-compiled, Tape replay",
    "python": "micrograd-compiled, pure-Python twin",
    "upstream": "upstream micrograd 0.1.0",
    "upstream-nogc": "upstream 0.1.0, gc.disable()",
    "torch": "PyTorch, 0-d float64 tensors",
    "c": "hand-written C (no autodiff)",
}

FULL = dict(
    rounds=5, warmup=1,
    steps={"cython": 10, "tape": 50, "python": 5, "upstream": 3, "upstream-nogc": 3, "torch": 3},
    c_seconds=0.5,
    scale_rounds=2,
    scale_sizes={"cython": [10**3, 10**4, 10**5, 10**6, 10**7],
                 "python": [10**3, 10**4, 10**5, 10**6]},
    scale_reps={10**3: 50, 10**4: 20, 10**5: 5, 10**6: 3, 10**7: 2},
    memory_n=10**6,
    tape_sizes=[10**4, 10**5, 10**6],
    tape_reps={10**4: 200, 10**5: 30, 10**6: 7},
    install_timeout=300,
)
QUICK = dict(
    rounds=2, warmup=1,
    steps={"cython": 3, "tape": 10, "python": 1, "upstream": 1, "upstream-nogc": 1, "torch": 1},
    c_seconds=0.2,
    scale_rounds=1,
    scale_sizes={"cython": [10**3, 10**4, 10**5], "python": [10**3, 10**4]},
    scale_reps={10**3: 10, 10**4: 5, 10**5: 2},
    memory_n=10**5,
    tape_sizes=[10**6],
    tape_reps={10**6: 3},
    install_timeout=30,
)

# (key, description, goal) -- evaluated in targets()
TARGETS = [
    ("step_upstream", "Demo step vs upstream (default GC)", ">= 150x faster"),
    ("step_upstream_nogc", "Demo step vs upstream with gc.disable()", ">= 30x faster"),
    ("backward_upstream", "Backward alone vs upstream's backward", ">= 300x faster"),
    ("bytes_per_node", "Memory per node (compiled)", "<= 64 bytes"),
    ("flat", "ns per node, 1e4 vs 1e7 nodes (build and backward, compiled)", "within 1.5x"),
    ("step_torch", "Demo step vs PyTorch scalar autograd", ">= 75x faster"),
    ("tape_upstream", "Tape replay step vs upstream's eager step", ">= 3000x faster"),
    ("tape_ns", "Tape forward+backward at 1e6 nodes", "<= 5 ns per node"),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# Setup: upstream in a side folder, the C step, the machine.
# ---------------------------------------------------------------------------------
def ensure_upstream(work, timeout):
    """Install upstream micrograd 0.1.0 into work/upstream (reused when present).

    Returns (folder or None, note)."""
    dest = work / "upstream"
    if (dest / "micrograd" / "engine.py").is_file() and list(dest.glob("micrograd-0.1.0.dist-info")):
        return dest, f"reused {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}"
    tmp = work / "upstream.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-input", "--target", str(tmp), "--no-deps", UPSTREAM_SPEC]
    log(f"installing upstream: {' '.join(cmd)}")
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        return None, f"pip install {UPSTREAM_SPEC} took over {timeout} s: upstream rows skipped"
    if proc.returncode != 0 or not (tmp / "micrograd" / "engine.py").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return None, f"pip install {UPSTREAM_SPEC} failed ({tail[0]}): upstream rows skipped"
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest, f"installed with pip in {time.monotonic() - t0:.1f} s"


def build_c(work, source=C_SOURCE):
    """Compile a C file here with the system compiler; returns (binary or None, note)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None, f"no C compiler ({cc}): C row skipped"
    binary = work / source.stem
    cmd = [cc, "-O2", str(source), "-o", str(binary)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[:200]}"
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return binary, f"{version.splitlines()[0] if version else cc}, `{cc} -O2`"


def node_pass(work, seconds, sizes):
    """Run node_pass.c: {n: ns per node} of one bare pass over n 56-byte nodes, or None."""
    binary, note = build_c(work, PASS_SOURCE)
    if binary is None:
        log(f"node-pass probe skipped: {note}")
        return None
    proc = subprocess.run([str(binary), str(seconds), *map(str, sizes)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        log(f"node-pass probe failed: {proc.stderr.strip()[:200]}")
        return None
    res = json.loads(proc.stdout)
    return dict(zip(res["sizes"], res["ns_per_node"]))


def machine_info():
    info = {"platform": platform.platform(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        info["cpu"] = m.group(1).strip() if m else platform.processor()
    except OSError:
        info["cpu"] = platform.processor() or "?"
    try:
        m = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        info["memory_gib"] = round(int(m.group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return info


def cpu_busy_seconds():
    """CPU seconds all processes of the machine have used so far (None off Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, idle, iowait, irq, softirq = (int(x) for x in fields[:7])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def git_describe():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------
# Workers.
# ---------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    pass


def run_worker(args, upstream_dir=None, engine=None, timeout=900):
    """Run workers.py with args in a fresh process; return its JSON result."""
    env = dict(os.environ)
    env.pop("MICROGRAD_PURE_PYTHON", None)
    env["PYTHONHASHSEED"] = "0"
    if engine == "python":
        env["MICROGRAD_PURE_PYTHON"] = "1"
    if engine in ("upstream", "upstream-nogc"):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(upstream_dir), env.get("PYTHONPATH")]))
    cmd = [sys.executable, str(WORKERS)]
    if upstream_dir is not None:
        cmd += ["--upstream-dir", str(upstream_dir)]
    cmd += [str(a) for a in args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"timed out after {timeout} s: {' '.join(cmd[1:])}")
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkerError(f"`workers.py {' '.join(map(str, args))}` exited {proc.returncode}: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def demo_rounds(cfg, available, upstream_dir, c_binary):
    """{engine: [result per round]}; engines alternate, order reversed every other round."""
    results = {e: [] for e in available}
    errors = {}
    for r in range(cfg["rounds"]):
        order = available if r % 2 == 0 else available[::-1]
        for engine in order:
            if engine in errors:
                continue
            if engine == "c":
                args = ["c", "--binary", c_binary, "--seconds", cfg["c_seconds"]]
            else:
                args = ["demo", engine, "--steps", cfg["steps"][engine], "--warmup", cfg["warmup"]]
            try:
                res = run_worker(args, upstream_dir, engine)
            except WorkerError as exc:
                errors[engine] = str(exc)
                log(f"  {engine}: FAILED: {exc}")
                continue
            results[engine].append(res)
            log(f"  round {r + 1}/{cfg['rounds']}  {engine:14s} step {fmt_ns(res['ns']['step'])}")
    return results, errors


def scale_runs(cfg, upstream_dir):
    """[(engine, shape, n, pooled reps {build, backward, free})]"""
    jobs = [(e, s, n) for e in ("cython", "python") for n in cfg["scale_sizes"][e]
            for s in ("chain", "wide")]
    pooled = {}
    errors = {}
    for r in range(cfg["scale_rounds"]):
        for engine, shape, n in (jobs if r % 2 == 0 else jobs[::-1]):
            key = (engine, shape, n)
            if key in errors:
                continue
            reps = cfg["scale_reps"][n]
            try:
                res = run_worker(["scale", engine, shape, n, "--reps", reps], upstream_dir, engine)
            except WorkerError as exc:
                errors[key] = str(exc)
                log(f"  scale {key}: FAILED: {exc}")
                continue
            acc = pooled.setdefault(key, {"build": [], "backward": [], "free": []})
            for ph in acc:
                acc[ph] += res[ph + "_raw"]
            log(f"  scale {engine:6s} {shape:5s} n={n:>8d}  build {res['build_ns_per_node']:.1f}"
                f"  backward {res['backward_ns_per_node']:.1f}  free {res['free_ns_per_node']:.1f} ns/node")
    rows = [(e, s, n, {ph: statistics.median(v) for ph, v in pooled[(e, s, n)].items()})
            for (e, s, n) in jobs if (e, s, n) in pooled]
    return rows, errors


# ---------------------------------------------------------------------------------
# Numbers.
# ---------------------------------------------------------------------------------
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def demo_medians(results):
    """{engine: {phase: median over rounds of the per-process medians}}"""
    return {e: {ph: med([r["ns"][ph] for r in rs]) for ph in ("forward", "backward", "update", "free", "step")}
            for e, rs in results.items() if rs}


def paired_ratio(results, num, den, phase="step"):
    """Median over rounds of num's time / den's time (the two ran in the same round)."""
    a, b = results.get(num) or [], results.get(den) or []
    ratios = [x["ns"][phase] / y["ns"][phase] for x, y in zip(a, b) if y["ns"][phase] > 0]
    return med(ratios)


def loss_check(results):
    """Largest relative difference of each engine's losses from the compiled engine's."""
    ref = (results.get("cython") or [None])[0]
    out = {}
    if ref is None:
        return out
    for e, rs in results.items():
        if not rs:
            continue
        worst = 0.0
        for a, b in zip(rs[0]["losses"], ref["losses"]):
            if a is not None and b is not None:
                worst = max(worst, abs(a - b) / max(abs(b), 1e-300))
        out[e] = worst
    return out


def cell(text):
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "/").replace("\n", " ")


def fmt_ns(ns):
    if ns is None:
        return "–"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_x(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:,.0f}×"
    if x >= 10:
        return f"{x:.1f}×"
    if x >= 0.1:
        return f"{x:.2f}×"
    return f"{x:.2g}×"


def targets(results, scale_rows, memory, tape_scale, quick, node_pass=None):
    """[(description, goal, measured text, met: True/False/None)]"""
    med_ = demo_medians(results)
    out = []

    def ratio_target(key, num, den, phase, goal):
        r = paired_ratio(results, num, den, phase)
        if r is None:
            missing = [e for e in (num, den) if not results.get(e)]
            return f"not measured ({', '.join(missing)} missing)", None
        return f"{fmt_x(r)} ({fmt_ns(med_[num][phase])} vs {fmt_ns(med_[den][phase])})", r >= goal

    for key, desc, goal in TARGETS:
        if key == "step_upstream":
            text, met = ratio_target(key, "upstream", "cython", "step", 150)
        elif key == "step_upstream_nogc":
            text, met = ratio_target(key, "upstream-nogc", "cython", "step", 30)
        elif key == "backward_upstream":
            text, met = ratio_target(key, "upstream", "cython", "backward", 300)
        elif key == "step_torch":
            text, met = ratio_target(key, "torch", "cython", "step", 75)
        elif key == "tape_upstream":
            text, met = ratio_target(key, "upstream", "tape", "step", 3000)
        elif key == "bytes_per_node":
            m = memory.get("cython")
            if m is None:
                text, met = "not measured", None
            else:
                text = (f"{m['bytes_per_node']:.1f} bytes of RSS per node (chain of {m['n']:.0e} nodes; "
                        f"the node object is {m.get('getsizeof', '?')} bytes)")
                met = m["bytes_per_node"] <= 64
        elif key == "flat":
            cy = {(s, n): v for e, s, n, v in scale_rows if e == "cython"}
            sizes = sorted({n for (_, n) in cy})
            lo, hi = 10**4, max(sizes) if sizes else None
            if hi is None or hi <= lo or (("chain", lo) not in cy):
                text, met = "not measured", None
            else:
                worst, parts = 0.0, []
                for shape in ("chain", "wide"):
                    for ph in ("build", "backward"):
                        a, b = cy[(shape, lo)][ph], cy[(shape, hi)][ph]
                        ratio = max(a, b) / min(a, b)
                        worst = max(worst, ratio)
                        parts.append(f"{shape} {ph} {a:.0f}→{b:.0f}")
                text = f"worst {worst:.2f}× between 1e4 and {hi:.0e} ({'; '.join(parts)} ns/node)"
                if node_pass and lo in node_pass and hi in node_pass:
                    text += (f"; a bare C pass over as many 56-byte nodes: {node_pass[lo]:.1f}→"
                             f"{node_pass[hi]:.1f} ({node_pass[hi] / node_pass[lo]:.1f}×)")
                met = worst <= 1.5
                if hi < 10**7:
                    text += f"; only up to {hi:.0e} in {'--quick' if quick else 'this run'}"
                    desc = desc.replace("1e7", f"{hi:.0e}")
        elif key == "tape_ns":
            t = tape_scale.get(("mlp", 10**6))
            dot = tape_scale.get(("dot", 10**6))
            if t is None:
                text, met = "not measured", None
            else:
                text = (f"{t['fb_ns_per_node']:.1f} ns per node on the training-shaped graph "
                        f"(the demo's loss over more samples, {t['nodes']:,} nodes)")
                if dot is not None:
                    text += (f"; {dot['fb_ns_per_node']:.1f} on a dot product whose nodes are "
                             "half leaves (each leaf is a Value read and written per replay)")
                met = t["fb_ns_per_node"] <= 5
                c, tp = med_.get("c"), (results.get("tape") or [None])[0]
                if c is not None and tp is not None:
                    text += (f"; C limit: {c['step'] / tp['tape_nodes']:.2f} ns per demo-graph node"
                             f" ({fmt_ns(c['step'])} per step / {tp['tape_nodes']:,} nodes)")
        out.append((desc, goal, text, met))
    return out


# ---------------------------------------------------------------------------------
# Output.
# ---------------------------------------------------------------------------------
def markdown(ctx):
    L = []
    cfg, results, env = ctx["cfg"], ctx["results"], ctx["env"]
    med_ = demo_medians(results)
    checks = loss_check(results)
    L.append("## Results")
    L.append("")
    L.append(f"Written by `{ctx['command']}` on {env['date']}; everything between the "
             "`results` markers is rewritten on every run.")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    m = env["machine"]
    L.append(f"| Machine | {m['cpu']}, {m['cores']} cores"
             + (f", {m['memory_gib']} GiB" if "memory_gib" in m else "") + f" ({m['platform']}) |")
    if env.get("pagefault"):
        L.append(f"| First touch of fresh memory | {env['pagefault']} |")
    if env.get("node_pass"):
        L.append(f"| One bare pass over 56-byte nodes (C) | {env['node_pass']} |")
    if env.get("other_cpu") is not None:
        L.append(f"| Other processes during the run | {env['other_cpu']:.2f} cores busy on average "
                 "(CPU time of the whole machine minus this run's; 0 on a quiet machine) |")
    L.append(f"| Python | {env['python']} |")
    L.append(f"| GC | {env['gc']} |")
    L.append(f"| Mode | {ctx['mode']} |")
    L.append(f"| micrograd-compiled | {env['git']} |")
    L.append(f"| Upstream | {cell(env['upstream'])} |")
    L.append(f"| PyTorch | {cell(env['torch'])} |")
    L.append(f"| C compiler | {env['c']} |")
    L.append("")
    if ctx["notes"]:
        for n in ctx["notes"]:
            L.append(f"- **Note:** {cell(n)}")
        L.append("")

    L.append("### Targets")
    L.append("")
    L.append("| Target | Goal | Measured (medians) | Met |")
    L.append("|---|---|---|---|")
    for desc, goal, text, met in ctx["targets"]:
        L.append(f"| {desc} | {goal} | {cell(text)} | {'yes' if met else 'no' if met is False else 'n/a'} |")
    L.append("")

    L.append("### Moons demo step")
    L.append("")
    L.append("100 samples, MLP(2, [16, 16, 1]), SVM loss + 1e-4 L2, full batch, SGD. Median time "
             "per phase (each process: median of its timed steps after 1 warm-up step; then the "
             "median over rounds). Ratios are medians of per-round ratios.")
    L.append("")
    L.append("| Engine | forward | backward | update | free | step | step ÷ compiled step "
             "| speedup vs upstream | rounds × steps | losses vs compiled |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for e in ENGINES:
        if e in ctx["skipped"]:
            L.append(f"| {LABELS[e]} | skipped: {cell(ctx['skipped'][e])} | | | | | | | | |")
            continue
        if e not in med_:
            continue
        d = med_[e]
        rs = results[e]
        if e == "c":
            steps = f"{len(rs)} × {rs[0]['iters_per_batch'] * rs[0]['batches']:,}"
        else:
            steps = f"{len(rs)} × {rs[0]['steps']}"
        vs_c = paired_ratio(results, e, "cython")
        vs_up = paired_ratio(results, "upstream", e)
        chk = checks.get(e)
        chk = "–" if chk is None else ("identical" if chk == 0 else f"max rel. diff {chk:.1e}")
        free = "–" if e in ("c", "tape") else fmt_ns(d["free"])
        L.append(f"| {LABELS[e]} | {fmt_ns(d['forward'])} | {fmt_ns(d['backward'])} | "
                 f"{fmt_ns(d['update'])} | {free} | **{fmt_ns(d['step'])}** | {fmt_x(vs_c)} | "
                 f"{fmt_x(vs_up)} | {steps} | {chk} |")
    L.append("")
    if results.get("tape"):
        L.append(f"The demo's graph has {results['tape'][0]['tape_nodes']:,} nodes (the length of its Tape).")
        L.append("")

    L.append("### Scaling: ns per node")
    L.append("")
    L.append("`chain`: `z = z * y`, n times (depth n). `wide`: `z = z + x` over n prebuilt leaves. "
             "Build, backward and free of the n op nodes, divided by n; median of the repetitions "
             "after a warm-up repetition" + (", pooled over rounds" if cfg["scale_rounds"] > 1 else "") + ".")
    L.append("")
    L.append("| Engine | graph | nodes | build | backward | free |")
    L.append("|---|---|---:|---:|---:|---:|")
    for e, s, n, v in ctx["scale_rows"]:
        L.append(f"| {LABELS[e]} | {s} | {n:.0e} | {v['build']:.1f} | {v['backward']:.1f} | {v['free']:.1f} |")
    for key, err in ctx["scale_errors"].items():
        L.append(f"| {LABELS[key[0]]} | {key[1]} | {key[2]:.0e} | failed: {cell(err[:200])} | | |")
    L.append("")

    L.append("### Memory: bytes per node")
    L.append("")
    L.append("Growth of the process's resident memory (`/proc/self/statm`) while building a chain "
             "`z = z * y`, divided by the number of nodes.")
    L.append("")
    L.append("| Engine | nodes | bytes per node | `sys.getsizeof(node)` |")
    L.append("|---|---:|---:|---:|")
    for e in ("cython", "python", "upstream"):
        mm = ctx["memory"].get(e)
        if mm is not None:
            size = mm.get("getsizeof", "?")
            if e == "upstream":
                size = f"{size} (+ its `__dict__`, `_prev` set, `_backward` closure and cells)"
            L.append(f"| {LABELS[e]} | {mm['n']:.0e} | {mm['bytes_per_node']:.1f} | {size} |")
        elif e in ctx["memory_errors"]:
            L.append(f"| {LABELS[e]} | | {cell(ctx['memory_errors'][e][:200])} | |")
    L.append("")

    L.append("### Tape replay: ns per node")
    L.append("")
    L.append("Two graphs, each recorded once: **mlp**, the demo's loss over enough moons samples "
             "to reach the size (training-shaped: parameters and inputs are few, ops are most "
             "nodes); **dot**, a dot product `z = z + a_i * b_i` of fresh leaves (half the nodes "
             "are leaves, and every leaf is a Value whose data is read and grad written on every "
             "replay). Time of `tape.forward()` + `tape.backward()` divided by the Tape's length "
             "(leaves included), median of repetitions after a warm-up.")
    L.append("")
    L.append("| graph | nodes | forward | backward | forward+backward | per op node |")
    L.append("|---|---:|---:|---:|---:|---:|")
    for (shape, n), t in sorted(ctx["tape_scale"].items()):
        L.append(f"| {shape} | {t['nodes']:,} | {t['forward_ns_per_node']:.2f} | "
                 f"{t['backward_ns_per_node']:.2f} | {t['fb_ns_per_node']:.2f} | "
                 f"{t['fb_ns_per_op_node']:.2f} |")
    L.append("")
    L.append(f"Total run time: {ctx['elapsed']:.0f} s.")
    return "\n".join(L)


def write_results(path, section):
    """Rewrite the marked section of path, keeping everything around it."""
    block = f"{START}\n{section}\n{END}"
    if path.exists():
        text = path.read_text()
        if START in text and END in text and text.index(START) < text.index(END):
            new = text[:text.index(START)] + block + text[text.index(END) + len(END):]
        else:
            new = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        new = ("# Benchmark results\n\n"
               "How to run and what each row means: [README.md](README.md).\n\n"
               f"{block}\n\n## Notes\n\nHand-written notes below the results section survive reruns.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


README_START = "<!-- results:readme:start -->"
README_END = "<!-- results:readme:end -->"


def write_readme(path, section, ctx):
    """Put this run's machine line, targets and demo table into the README's marked block."""
    parts = section.split("\n### ")
    keep = [p for p in parts[1:] if p.startswith(("Targets", "Moons demo step"))]
    env = ctx["env"]
    head = (f"From `{ctx['command']}` on {env['date']}: {env['machine']['cpu']}, "
            f"{env['machine']['cores']} cores, Python {env['python'].split()[0]}, "
            f"GC {'default' if 'default' in env['gc'] else env['gc']}.")
    block = README_START + "\n" + head + "\n\n" + "\n".join("#### " + p.strip() + "\n" for p in keep) + README_END
    text = path.read_text()
    if README_START in text and README_END in text:
        text = text[:text.index(README_START)] + block + text[text.index(README_END) + len(README_END):]
    else:
        raise SystemExit(f"{path} has no {README_START} ... {README_END} block")
    path.write_text(text)


def chart(path, ctx):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart written"
    results = ctx["results"]
    rows = [(LABELS[e], paired_ratio(results, "upstream", e)) for e in ENGINES
            if results.get(e) and results.get("upstream")]
    rows = [(lab, r) for lab, r in rows if r is not None]
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    ax = axes[0]
    if rows:
        labs, vals = zip(*rows)
        ypos = range(len(rows))
        ax.barh(ypos, vals, color=["#d62728" if "upstream" in lab else "#1f77b4" for lab in labs])
        ax.set_yticks(list(ypos))
        ax.set_yticklabels(labs)
        ax.invert_yaxis()
        ax.set_xscale("log")
        for y, v in zip(ypos, vals):
            ax.text(v, y, f" {fmt_x(v)}", va="center", fontsize=8)
        ax.set_xlabel("demo step: speedup over upstream micrograd 0.1.0 (median, log scale)")
        ax.set_xlim(right=max(vals) * 20)
    else:
        ax.text(0.5, 0.5, "upstream not measured", ha="center", transform=ax.transAxes)
    ax = axes[1]
    colors = {("cython", "chain"): "#1f77b4", ("cython", "wide"): "#2ca02c",
              ("python", "chain"): "#9467bd", ("python", "wide"): "#8c564b"}
    for (eng, shape), color in colors.items():
        pts = sorted((n, v) for e, s, n, v in ctx["scale_rows"] if e == eng and s == shape)
        if not pts:
            continue
        ns = [p[0] for p in pts]
        name = "compiled" if eng == "cython" else "twin"
        marker = "o" if eng == "cython" else "s"
        ax.plot(ns, [p[1]["build"] for p in pts], "-", marker=marker, color=color,
                label=f"{name} {shape}: build")
        ax.plot(ns, [p[1]["backward"] for p in pts], ":", marker=marker, color=color,
                mfc="none", label=f"{name} {shape}: backward")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("nodes")
    ax.set_ylabel("ns per node (median)")
    ax.set_title("scaling: ns per node (build solid, backward dotted)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"micrograd, compiled — {ctx['env']['machine']['cpu']}, Python "
                 f"{ctx['env']['python'].split()[0]}, {ctx['env']['date']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"


# ---------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a run of seconds: fewer rounds, smaller graphs")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="Markdown file to update")
    p.add_argument("--chart", type=Path, default=HERE / "ratios.png", help="PNG chart to write")
    p.add_argument("--readme", type=Path, default=None,
                   help="README whose results block to update (default: the project's README "
                        "for a full run, none for --quick)")
    p.add_argument("--work", type=Path, default=HERE / "_work",
                   help="scratch folder: upstream install, C binary, raw JSON (default benchmarks/_work)")
    p.add_argument("--rounds", type=int, help="override the number of demo rounds")
    args = p.parse_args(argv)
    t_start = time.monotonic()
    cfg = dict(QUICK if args.quick else FULL)
    if args.rounds:
        cfg["rounds"] = args.rounds
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    notes, skipped = [], {}

    # -- setup --------------------------------------------------------------------------
    upstream_dir, up_note = ensure_upstream(work, cfg["install_timeout"])
    log(f"upstream: {up_note}")
    if upstream_dir is None:
        notes.append(up_note)
        skipped["upstream"] = skipped["upstream-nogc"] = "upstream micrograd 0.1.0 could not be installed"
    c_binary, c_note = build_c(work)
    log(f"C: {c_note}")
    if c_binary is None:
        skipped["c"] = c_note
    import importlib.util
    torch_spec = importlib.util.find_spec("torch")
    if torch_spec is None:
        skipped["torch"] = "torch is not installed (`pip install torch`)"
        torch_note = "not installed: its row is skipped"
    else:
        torch_note = None  # filled from the worker's report
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "git": git_describe(),
        "c": c_note,
    }
    busy0, own0, wall0 = cpu_busy_seconds(), own_cpu_seconds(), time.monotonic()
    try:
        probe = run_worker(["pagefault", 128])
        pf, node = probe["ns_per_page"], probe["node_bytes"]
        env["pagefault"] = (f"{pf[0] / 1000:.1f} µs per {probe['page_size'] // 1024} KiB page "
                            f"(then {pf[1] / 1000:.1f} µs), i.e. {pf[0] * node / probe['page_size']:.0f} "
                            f"ns per {node}-byte node: a growing heap pays this")
        hp = probe.get("ns_per_huge_page")
        if hp:      # the engine's chunks are advised as huge pages
            env["pagefault"] += (f"; with `MADV_HUGEPAGE`, as the engine's node chunks: "
                                 f"{hp[0] * node / (2 << 20):.1f} then {hp[1] * node / (2 << 20):.1f} ns per node")
    except WorkerError as exc:
        log(f"page-fault probe failed: {exc}")
    # the sizes the scaling table compares (1e4 up), so the row stands beside the target
    sizes = [n for n in cfg["scale_sizes"]["cython"] if n >= 10**4]
    env["node_pass_ns"] = node_pass(work, 0.1 if args.quick else 0.5, sizes)
    if env["node_pass_ns"]:
        ns = env["node_pass_ns"]
        lo, hi = min(ns), max(ns)
        env["node_pass"] = (", ".join(f"{ns[n]:.2f} ns/node at {n:.0e}" for n in sorted(ns))
                            + f": a chain's backward with no graph logic, newest first ({ns[hi] / ns[lo]:.1f}× "
                            f"from {lo:.0e} to {hi:.0e}: caches, then main memory)")

    # -- demo rounds ----------------------------------------------------------------------
    available = [e for e in ENGINES if e not in skipped]
    log(f"demo step: {cfg['rounds']} rounds of {', '.join(available)}")
    results, errors = demo_rounds(cfg, available, upstream_dir, c_binary)
    for e, err in errors.items():
        if not results.get(e):
            skipped[e] = f"failed: {err[:160]}"
            results.pop(e, None)
        else:
            notes.append(f"{LABELS[e]}: a round failed ({err[:160]}); medians use the others")
    if results.get("torch"):
        t = results["torch"][0]
        torch_note = f"{t['torch']} ({t['torch_threads']} thread)"
    elif torch_note is None:
        torch_note = skipped.get("torch", "not measured")
    up0 = (results.get("upstream") or results.get("upstream-nogc") or [None])[0]
    env["upstream"] = (f"micrograd 0.1.0 from `{up0['micrograd_file']}` ({up_note})" if up0
                       else up_note)
    env["torch"] = torch_note
    thr = (results.get("cython") or [{"gc_threshold": "?"}])[0]["gc_threshold"]
    env["gc"] = (f"default (enabled, thresholds {tuple(thr)}) in every process, except the row "
                 "\"upstream 0.1.0, gc.disable()\", which calls gc.disable() before building anything")

    # -- scaling, memory, tape --------------------------------------------------------------
    log("scaling")
    scale_rows, scale_errors = scale_runs(cfg, upstream_dir)
    log("memory")
    memory, memory_errors = {}, {}
    for e in ("cython", "python", "upstream"):
        if e == "upstream" and upstream_dir is None:
            memory_errors[e] = "skipped: upstream not installed"
            continue
        try:
            memory[e] = run_worker(["memory", e, cfg["memory_n"]], upstream_dir,
                                   "upstream" if e == "upstream" else e)
            log(f"  memory {e:8s} {memory[e]['bytes_per_node']:.1f} bytes/node")
        except WorkerError as exc:
            memory_errors[e] = f"failed: {exc}"
            log(f"  memory {e}: FAILED {exc}")
    log("tape replay")
    tape_scale = {}
    for shape in ("mlp", "dot"):
        for n in cfg["tape_sizes"]:
            try:
                tape_scale[(shape, n)] = run_worker(["tape-scale", n, "--shape", shape, "--reps",
                                                     cfg["tape_reps"][n]], upstream_dir, "cython")
                log(f"  tape {shape} n={n:.0e}  {tape_scale[(shape, n)]['fb_ns_per_node']:.2f} "
                    "ns/node forward+backward")
            except WorkerError as exc:
                notes.append(f"tape replay ({shape}) at {n:.0e} nodes failed: {exc}")

    # -- report ---------------------------------------------------------------------------
    mode = ("--quick: " if args.quick else "full: ") + (
        f"{cfg['rounds']} round{'s' if cfg['rounds'] != 1 else ''}; per process 1 warm-up step then "
        + ", ".join(f"{e} {cfg['steps'][e]}" for e in ENGINES if e in cfg["steps"])
        + f" timed steps; C {cfg['c_seconds']} s in-process")
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    ctx = dict(cfg=cfg, results=results, env=env, skipped=skipped, notes=notes, mode=mode,
               scale_rows=scale_rows, scale_errors=scale_errors, memory=memory,
               memory_errors=memory_errors, tape_scale=tape_scale, command=command)
    ctx["targets"] = targets(results, scale_rows, memory, tape_scale, args.quick, env.get("node_pass_ns"))
    ctx["elapsed"] = time.monotonic() - t_start
    busy1 = cpu_busy_seconds()
    if busy0 is not None and busy1 is not None:
        others = (busy1 - busy0) - (own_cpu_seconds() - own0)
        env["other_cpu"] = max(0.0, others / (time.monotonic() - wall0))
    section = markdown(ctx)
    write_results(args.out, section)
    readme = args.readme or (None if args.quick else HERE.parent / "README.md")
    if readme is not None:
        write_readme(readme, section, ctx)
        print(f"README results block updated: {readme}")
    (work / ("results-quick.json" if args.quick else "results.json")).write_text(json.dumps(
        {k: ctx[k] for k in ("results", "env", "skipped", "notes", "memory")}
        | {"tape_scale": {f"{shape} {n}": t for (shape, n), t in ctx["tape_scale"].items()}}
        | {"scale_rows": [[e, s, n, v] for e, s, n, v in scale_rows],
           "targets": ctx["targets"]}, indent=1, default=str))
    print(section)
    print()
    print("Targets:")
    for desc, goal, text, met in ctx["targets"]:
        print(f"  [{'MET' if met else 'NOT MET' if met is False else 'n/a'}] {desc} {goal}: {text}")
    print()
    print(f"results written to {args.out}")
    print(chart(args.chart, ctx))
    if not results.get("cython"):
        print("error: the compiled engine's demo step could not be measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark suite of micrograd, compiled: measure, then write the results.

    python benchmarks/run.py --quick     # minutes (JAX eager is the slowest row);
                                         # writes under benchmarks/_work/ only
    python benchmarks/run.py             # full run, 10-30 minutes on 2 cores; rewrites the
                                         # tracked results (RESULTS.md, README.md and
                                         # docs/porting.md blocks, ratios.png)
    python benchmarks/run.py --from benchmarks/_work/results.json   # re-render, no measuring

Every measurement runs in its own process (benchmarks/workers.py) and is timed in process
CPU time; engines alternate within each round (A B C ... then ... C B A), every number is a
median, and every ratio is a median of per-round ratios. See benchmarks/README.md.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True      # --quick must leave the checkout as it found it
import psutil  # noqa: E402

import chart  # noqa: E402
import peers  # noqa: E402
import upstream  # noqa: E402
import workers  # noqa: E402
from fmt import cell, fmt_ns, fmt_x, med, table  # noqa: E402

# The order the demo's jobs run in within a round (reversed every other round): the pairs whose
# ratios are targets back to back, since the machine's speed drifts over minutes; slow peers last.
RUN_ORDER = ["floats", "cython", "tape-optim", "c", "by-sample", "tape-loops", "tape", "python", "upstream",
             "upstream-nogc", "torch", "autograd", "jax", "jax-jit"]
HERE = Path(__file__).resolve().parent
REPO, WORK = HERE.parent, HERE / "_work"
ENGINES = ["cython", "tape", "tape-optim", "python", "upstream", "upstream-nogc", "torch", "autograd", "jax",
           "jax-jit", "floats", "c"]
LABELS = {"cython": "micrograd-compiled (Cython)", "tape": "micrograd-compiled, Tape replay",
          "tape-optim": "Tape + micrograd.optim.SGD, bare loop", "autograd": "HIPS autograd, scalar floats",
          "jax": "JAX eager, 0-d float64", "jax-jit": "jax.jit per sample, 100 calls per step",
          "floats": "nn.py's forward on plain floats (no autodiff)",
          "python": "micrograd-compiled, pure-Python twin", "upstream": "upstream micrograd 0.1.0",
          "upstream-nogc": "upstream 0.1.0, gc.disable()", "torch": "PyTorch, 0-d float64 tensors",
          "c": "hand-written C (no autodiff)", "tape-loops": "an instruction at a time in C (tape_pass.c)",
          "by-sample": "the Tape's program batched by sample, in C (tape_pass.c)"}
PHASES = ("forward", "backward", "update", "free", "step")
E3, E4, E5, E6, E7 = (10**k for k in range(3, 8))
FULL = dict(rounds=5, steps={"cython": 10, "tape": 50, "tape-optim": 10, "python": 5, "upstream": 3,
                             "upstream-nogc": 3, "torch": 3, "autograd": 1, "jax": 1, "jax-jit": 3,
                             "floats": 10}, peer_rounds=2, jit_whole=[2, 10, 100], c_seconds=0.5, scale_rounds=2,
            scale=[("cython", s, [E3, E4, E5, E6, E7]) for s in ("chain", "wide", "dag")]
            + [("python", s, [E3, E4, E5, E6]) for s in ("chain", "wide")]
            + [("cython", s, [E4, E5, E6]) for s in ("mlp", "dot")],
            reps={E3: 50, E4: 20, E5: 5, E6: 3, E7: 2}, memory_n=E6, install_timeout=300)
QUICK = dict(rounds=2, steps={"cython": 3, "tape": 10, "tape-optim": 10, "python": 1, "upstream": 1,
                              "upstream-nogc": 1, "torch": 1, "autograd": 1, "jax": 1, "jax-jit": 1,
                              "floats": 3}, peer_rounds=1, jit_whole=[2], c_seconds=0.2, scale_rounds=1,
             scale=[("cython", s, [E3, E4, E5]) for s in ("chain", "wide", "dag")]
             + [("python", s, [E3, E4]) for s in ("chain", "wide")]
             + [("cython", s, [E6]) for s in ("mlp", "dot")],
             reps={E3: 10, E4: 5, E5: 2, E6: 1}, memory_n=E5, install_timeout=30)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------
def build_c(name):
    """Compile benchmarks/NAME.c into benchmarks/_work/; (binary or None, note)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None, f"no C compiler ({cc})"
    cmd = [cc, "-O2", str(HERE / f"{name}.c"), "-o", str(WORK / name)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return None, f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[:200]}"
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    return WORK / name, f"{(version.splitlines() or [cc])[0]}, `{cc} -O2`"


def worker(*args, timeout=1800):
    """Run workers.py with args in a fresh process; its JSON result."""
    env = {k: v for k, v in os.environ.items() if k != "MICROGRAD_PURE_PYTHON"}
    env.update(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, str(HERE / "workers.py"), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"`workers.py {' '.join(cmd[2:])}` exited {proc.returncode}: "
                           + (proc.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alternate(jobs, rounds, args_of, show, rounds_of=lambda job: None):
    """{job: [result per round, None where it failed or was not run]}, jobs in order A B C,
    then C B A; a job runs in its first rounds_of(job) rounds (all if None); errors:
    {job: message} (a job that fails is not run again)."""
    out, errors = {j: [] for j in jobs}, {}
    for r in range(rounds):
        for job in (jobs if r % 2 == 0 else jobs[::-1]):
            res = None
            if job not in errors and r < (rounds_of(job) or rounds):
                try:
                    res = worker(*args_of(job))
                    log(f"  round {r + 1}/{rounds} {show(job, res)}")
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    errors[job] = str(exc)
                    log(f"  {job}: FAILED {exc}")
            out[job].append(res)
    return out, errors


def measure(cfg, quick):
    t_start, cpu0 = time.monotonic(), (psutil.cpu_times(), psutil.Process().cpu_times())
    WORK.mkdir(parents=True, exist_ok=True)
    skipped, notes = {}, []
    up_dir, up_note = upstream.ensure_upstream(timeout=cfg["install_timeout"])
    log(f"upstream: {up_note}")
    if up_dir is None:
        skipped["upstream"] = skipped["upstream-nogc"] = up_note
    c_step, c_note = build_c("demo_step")
    if c_step is None:
        skipped["c"] = c_note
    skipped.update(peers.absent())
    tape_pass_binary = build_c("tape_pass")
    loops, loops_note = program_loops(cfg, tape_pass_binary)

    log("demo step")
    engines = sorted([e for e in ENGINES if e not in skipped] + list(loops), key=RUN_ORDER.index)
    demo, errors = alternate(
        engines, cfg["rounds"],
        lambda e: loops[e] if e in loops else ["c", c_step, "--seconds", cfg["c_seconds"]] if e == "c"
        else ["demo", e, "--steps", cfg["steps"][e]],
        lambda e, res: f"{e:14s} step {fmt_ns(res['ns']['step'])}",
        lambda e: cfg["peer_rounds"] if e in peers.SLOW else None)
    for f in WORK.glob("demo.prog*"):
        f.unlink()
    for e, err in errors.items():
        if any(demo[e]):
            notes.append(f"{LABELS[e]}: a round failed ({err[:160]}); medians use the others")
        else:
            skipped[e] = f"failed: {err[:160]}"
            del demo[e]

    jit_whole = peers.measure_jit_whole(worker, cfg["jit_whole"], log) if "jax-jit" not in skipped else []

    log("scaling")
    jobs = [(e, s, n) for e, s, sizes in cfg["scale"] for n in sizes]
    tape_pass_binary, tape_pass_note = tape_pass_binary

    def scale_args(j):      # cython's chain, wide and dag: tape_pass.c right after each Tape
        paired = tape_pass_binary is not None and j[0] == "cython" and j[1] in ("chain", "wide", "dag")
        return (["scale", *j, "--reps", cfg["reps"][j[2]]]
                + (["--tape-pass", str(tape_pass_binary), "--seconds", "0.1" if quick else "0.5"]
                   if paired else []))
    scale_runs, scale_errors = alternate(
        jobs, cfg["scale_rounds"], scale_args,
        lambda j, res: f"scale {' '.join(map(str, j))}: backward "
                       f"{statistics.median(res['backward']) / j[2]:.1f} ns/node"
                       + (f", Tape ÷ C {statistics.median(res['tape_vs_c']):.2f}×"
                          if res.get("tape_vs_c") else ""))
    scale = []
    for (e, s, n), runs in scale_runs.items():
        runs = [r for r in runs if r]
        if runs:
            row = {"engine": e, "shape": s, "n": n, "nodes": runs[0].get("nodes", n),
                   "op_nodes": runs[0].get("op_nodes", n)}
            for ph in ("build", "backward", "free", "tape_forward", "tape_backward"):
                row[ph] = med([t / row["op_nodes"] for r in runs for t in r[ph]])
            for ph in ("c_tape_pass", "tape_vs_c"):     # ns per op node; a ratio per repetition
                row[ph] = med([x for r in runs for x in r.get(ph, [])])
            scale.append(row)
    bare, pass_note = build_c("node_pass")
    sizes = sorted({n for e, s, sizes in cfg["scale"] if s in ("chain", "wide", "dag") for n in sizes})
    node_pass = {}
    if bare is not None:
        res = json.loads(subprocess.run([str(bare), "0.1" if quick else "0.5", *map(str, sizes)],
                                        capture_output=True, text=True, check=True).stdout)
        node_pass = {str(n): ns for n, ns in zip(res["sizes"], res["ns_per_node"])}

    log("memory")
    memory = {}
    for e in ("cython", "tape", "python", "upstream"):
        if e == "upstream" and up_dir is None:
            memory[e] = {"error": "upstream not installed"}
            continue
        try:
            memory[e] = worker("memory", e, cfg["memory_n"])
            log(f"  memory {e:8s} {memory[e]['bytes_per_node']:.1f} bytes/node")
        except RuntimeError as exc:
            memory[e] = {"error": str(exc)}

    ref = next(r for e in ("cython", "python") for r in demo.get(e, []) if r) if demo else {}
    busy, own = psutil.cpu_times(), psutil.Process().cpu_times()
    others = (sum(busy) - busy.idle - sum(cpu0[0]) + cpu0[0].idle) - (sum(own) - sum(cpu0[1]))
    return {
        "command": "python benchmarks/run.py" + (" --quick" if quick else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "python": sys.version.split()[0], "python_executable": sys.executable,
        "gc_threshold": ref.get("gc_threshold"), "git": git_describe(),
        "mode": mode_text(cfg, quick), "upstream": up_note, "peers": peers.versions(), "c": c_note,
        "other_cpu": max(0.0, others / (time.monotonic() - t_start)),
        "demo": demo, "jit_whole": jit_whole, "skipped": skipped, "notes": notes, "scale": scale,
        "scale_errors": {" ".join(map(str, j)): err for j, err in scale_errors.items()},
        "node_pass": node_pass, "node_pass_note": pass_note,
        "tape_pass_note": tape_pass_note, "loops_note": loops_note, "memory": memory,
        "elapsed": time.monotonic() - t_start,
    }


def program_loops(cfg, built):
    """The demo's own Tape program in tape_pass.c (built: build_c's result), as recorded (run
    an instruction at a time) and batched by sample (by_sample.py), timed in the demo rounds
    beside the engines so that the floors table's ratios are per round: ({job: worker args}, note)."""
    binary, note = built
    if binary is None:
        return {}, note
    prog, batched = WORK / "demo.prog", WORK / "demo.prog.runs"
    try:
        n = worker("program", prog, "--runs", batched)["instructions"]
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {}, f"{note}; the demo's program was not written: {exc}"
    return {job: ["loops", binary, f"{shape}:{n}:{path}", "--seconds", cfg["c_seconds"]]
            for job, shape, path in (("tape-loops", "prog", prog), ("by-sample", "runs", batched))}, note


def machine():
    """pyperf's metadata of this machine, and psutil's memory total."""
    import pyperf
    meta = pyperf.Run([1.0], metadata={"name": "machine"}).get_metadata()
    return {"cpu": meta.get("cpu_model_name", "?"), "cores": meta.get("cpu_count"),
            "platform": meta.get("platform"), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def git_describe():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mode_text(cfg, quick):
    return (("--quick: " if quick else "full: ") + f"{cfg['rounds']} rounds; per process 1 warm-up "
            "step then " + ", ".join(f"{e} {n}" for e, n in cfg["steps"].items())
            + f" timed steps (autograd and JAX in the first {cfg['peer_rounds']} of the rounds); "
            f"C {cfg['c_seconds']} s in-process")


def pyperf_suite(R, path):
    """The demo rows as a pyperf suite (one run per process, values in seconds of CPU), so
    `python -m pyperf compare_to old.json new.json` compares two runs."""
    import pyperf
    benches = []
    for e, rounds in R["demo"].items():
        runs = [pyperf.Run([t / 1e9 for t in r.get("raw_step_ns") or [r["ns"]["step"]]],
                           metadata={"name": e, "unit": "second", "loops": 1,
                                     "timer": "process CPU time"}, collect_metadata=False)
                for r in rounds if r]
        benches.append(pyperf.Benchmark(runs))
    pyperf.BenchmarkSuite(benches).dump(str(path), replace=True)


# ---------------------------------------------------------------------------------
# Numbers and targets, from one results dict R (benchmarks/_work/results*.json).
# ---------------------------------------------------------------------------------
def medians(R):
    """{engine: {phase: median over rounds of the per-process medians}}"""
    return {e: {ph: med([r["ns"][ph] for r in rs if r]) for ph in PHASES} for e, rs in R["demo"].items()}


def paired_ratio(R, num, den, phase="step"):
    """Median over rounds of num's time / den's time, the two measured in the same round."""
    pairs = zip(R["demo"].get(num, []), R["demo"].get(den, []))
    return med([a["ns"][phase] / b["ns"][phase] for a, b in pairs if a and b and b["ns"][phase] > 0])


def ratio(num, den, phase="step"):
    def compute(R):
        r, m = paired_ratio(R, num, den, phase), medians(R)
        return r, r and f"{fmt_x(r)} ({fmt_ns(m[num][phase])} vs {fmt_ns(m[den][phase])})"
    return compute


def bytes_per_node(R):
    m = R["memory"].get("cython", {})
    b = m.get("bytes_per_node")
    return b, b and f"{b:.1f} bytes of RSS per node (chain of {m['n']:.0e}; the node object is {m['getsizeof']} bytes)"


def scale_row(R, engine, shape, n):
    return next((r for r in R["scale"] if (r["engine"], r["shape"], r["n"]) == (engine, shape, n)), None)


def tape_ns(R):
    t, dot = scale_row(R, "cython", "mlp", E6), scale_row(R, "cython", "dot", E6)
    if t is None:
        return None, None
    fb = (t["tape_forward"] + t["tape_backward"]) * t["op_nodes"] / t["nodes"]
    text = f"{fb:.2f} ns per node on the training-shaped graph ({t['nodes']:,} nodes)"
    if dot:
        text += f"; {(dot['tape_forward'] + dot['tape_backward']) * dot['op_nodes'] / dot['nodes']:.2f} on the dot product"
    return fb, text


def tape_vs_pass(R):
    rows = [(r["n"], pass_ratio(R, r, "tape")) for r in R["scale"]
            if r["engine"] == "cython" and r["shape"] == "dag" and r["n"] >= E4]
    rows = [(n, x) for n, x in rows if x is not None]
    if not rows:
        return None, None
    worst = max(x for _, x in rows)
    return worst, f"worst {fmt_x(worst)} (" + ", ".join(f"{x:.2f}× at {n:.0e}" for n, x in rows) + ")"


def pass_ratio(R, row, what):
    """Engine's backward per node ÷ the bare C pass at the same n, or the Tape's
    forward+backward ÷ tape_pass.c's on the same graph."""
    if what == "backward":
        t, bare = row["backward"], R["node_pass"].get(str(row["n"]))
        return t / bare if bare and t else None
    return row.get("tape_vs_c")     # the median of the ratios paired in each repetition


TARGETS = [  # (key, description, (comparison, threshold, unit), how it is computed)
    ("step_upstream", "Demo step vs upstream (default GC)", (">=", 150, "× faster"), ratio("upstream", "cython")),
    ("step_upstream_nogc", "Demo step vs upstream with gc.disable()", (">=", 30, "× faster"),
     ratio("upstream-nogc", "cython")),
    ("backward_upstream", "Backward alone vs upstream's backward", (">=", 300, "× faster"),
     ratio("upstream", "cython", "backward")),
    ("bytes_per_node", "Memory per node (compiled)", ("<=", 64, " bytes"), bytes_per_node),
    ("step_torch", "Demo step vs PyTorch scalar autograd", (">=", 75, "× faster"), ratio("torch", "cython")),
    ("tape_upstream", "Tape replay step vs upstream's eager step", (">=", 3000, "× faster"), ratio("upstream", "tape")),
    ("tape_optim_c", "Tape + optim step vs the hand-written C step (demo_step.c)", ("<=", 2, "×"),
     ratio("tape-optim", "c")),
    ("eager_floats", "Eager demo step vs nn.py's forward on plain floats", ("<=", 1.5, "×"), ratio("cython", "floats")),
    ("tape_ns", "Tape forward+backward at 1e6 nodes", ("<=", 5, " ns per node"), tape_ns),
    ("tape_vs_pass", "Tape forward+backward vs C over the same random DAG, 1e4 nodes up", ("<=", 1.5, "×"),
     tape_vs_pass),
]


def targets(R):
    """[(key, description, goal, measured text, met: True/False/None)]"""
    out = []
    for key, desc, (op, limit, unit), compute in TARGETS:
        value, text = compute(R)
        met = None if value is None else value >= limit if op == ">=" else value <= limit
        out.append((key, desc, f"{'≥' if op == '>=' else '≤'} {limit:g}{unit}", text or "not measured", met))
    return out


# ---------------------------------------------------------------------------------
# Markdown: RESULTS.md (everything), README.md (targets and demo), docs/porting.md (staircase).
# ---------------------------------------------------------------------------------
def gc_text(R):
    return (f"default (enabled, thresholds {tuple(R['gc_threshold'] or ())}) in every process, "
            "except the row \"upstream 0.1.0, gc.disable()\"")


def md_head(R):
    m = R["machine"]
    rows = [("Machine", f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB ({m['platform']})"),
            ("Other processes during the run", f"{R['other_cpu']:.2f} cores busy on average (0 on a quiet machine)"),
            ("Python", f"{R['python']} ({R['python_executable']})"), ("GC", gc_text(R)),
            ("Clock", "process CPU time (`time.process_time_ns`; `CLOCK_PROCESS_CPUTIME_ID` in C)"),
            ("Mode", R["mode"]), ("micrograd-compiled", R["git"]), ("Upstream", R["upstream"]),
            ("Peers", ", ".join(f"{k} {v}" for k, v in R.get("peers", {}).items()) or "none installed"),
            ("C compiler", R["c"])]
    return (f"Written by `{R['command']}` on {R['date']}; everything between the `results` markers "
            "is rewritten on every run.\n\n" + table(["<", "<"], [(a, cell(b)) for a, b in rows])
            + "".join(f"\n- **Note:** {cell(n)}" for n in R["notes"]))


def md_targets(R):
    return table(["<Target", "<Goal", "<Measured (medians)", "<Met"],
                 [(d, g, cell(t), {True: "yes", False: "no"}.get(met, "n/a")) for _, d, g, t, met in targets(R)])


def md_demo(R):
    m, rows = medians(R), []
    ref = next((r for r in R["demo"].get("cython", []) if r), None)
    for e in ENGINES:
        if e in R["skipped"]:
            rows.append([LABELS[e], f"skipped: {cell(R['skipped'][e])}"] + [""] * 8)
        elif e in m:
            rs = [r for r in R["demo"][e] if r]
            diff = max((abs(a - b) / max(abs(b), 1e-300) for a, b in zip(rs[0]["losses"], ref["losses"])),
                       default=None) if ref else None
            d = m[e]
            rows.append([LABELS[e], *(fmt_ns(d[ph]) for ph in PHASES[:3]),
                         "–" if e in ("c", "tape", "tape-optim") else fmt_ns(d["free"]), f"**{fmt_ns(d['step'])}**",
                         fmt_x(paired_ratio(R, e, "cython")),
                         "–" if e == "floats" else fmt_x(paired_ratio(R, "upstream", e)),
                         f"{len(rs)} × {rs[0]['steps']:,}",
                         "–" if diff is None else "identical" if diff == 0 else f"max rel. diff {diff:.1e}"])
    tape = next((r for r in R["demo"].get("tape", []) if r), None)
    return ("100 samples, MLP(2, [16, 16, 1]), SVM loss + 1e-4 L2, full batch, SGD. Median CPU time per "
            "phase (each process: median of its timed steps after 1 warm-up step, but the Tape + optim "
            "and C steps, each the median of batches of steps timed as a whole, as benchmarks/README.md "
            "says; then the median over rounds). Ratios are medians of per-round ratios; within a "
            "round, the engines whose ratios "
            "are targets run back to back (floats and compiled; Tape + optim, C and the program's loops).\n\n"
            + table(["<Engine", "forward", "backward", "update", "free", "step", "step ÷ compiled step",
                     "speedup vs upstream", "<rounds × steps", "<losses vs compiled"], rows)
            + (f"\nThe demo's graph has {tape['tape_nodes']:,} nodes (the length of its Tape).\n" if tape else "")
            + peers.md_notes(R))


def md_scale(R):
    rows = []
    for r in R["scale"]:
        if r["shape"] in ("chain", "wide", "dag"):
            bare = R["node_pass"].get(str(r["n"]))
            tape = r["tape_forward"] and r["tape_forward"] + r["tape_backward"]
            c_tape = r.get("c_tape_pass") if tape else None
            rows.append([LABELS[r["engine"]], r["shape"], f"{r['n']:.0e}", *(f"{r[ph]:.1f}" for ph in
                         ("build", "backward", "free")), f"{tape:.1f}" if tape else "–",
                         f"{bare:.2f}" if bare else "–", fmt_x(pass_ratio(R, r, "backward")),
                         f"{c_tape:.2f}" if c_tape else "–", fmt_x(pass_ratio(R, r, "tape"))])
    rows += [[err[:200], "", "", "", "", "", "", "", "", "", ""] for err in R["scale_errors"].values()]
    return ("`chain`: `z = z * y`, n times (depth n). `wide`: `z = z + x` over n prebuilt leaves. `dag`: "
            "a spine `z = (z + r) * 0.5` where r is a random earlier spine node. ns per op node, median "
            "over repetitions after a warm-up one: build, `z.backward()`, `del z`, and the compiled "
            "graph's `Tape` forward+backward. Each repetition builds the same graph again, in the "
            "slots of the last: up to 131,072 op nodes the compiled `backward()` then checks it "
            "against the walk it remembers rather than walking it (docs/porting.md 2.11). "
            "**bare C pass**: `node_pass.c`, one pass over n 56-byte "
            "nodes newest first with no graph logic; backward ÷ pass divides by it. **C fwd+bwd**: "
            "`tape_pass.c`, forward and backward over the same graph in the Tape's layout "
            "(instructions naming slots of dense arrays) as plain C loops that know each op, "
            "with no dispatch, run by the same process right after each repetition's Tape "
            "replays; Tape ÷ C is the median of those paired ratios.\n\n"
            + table(["<Engine", "<graph", "nodes", "build", "backward", "free", "Tape fwd+bwd",
                     "bare C pass", "backward ÷ pass", "C fwd+bwd", "Tape ÷ C"], rows))


def md_memory(R):
    rows = []
    for e in ("cython", "tape", "python", "upstream"):
        mm = R["memory"].get(e, {})
        if "error" in mm:
            rows.append([LABELS[e], "", cell(mm["error"][:200]), ""])
        elif mm:
            size = "–" if e == "tape" else mm["getsizeof"]
            what = f"+ {mm['bytes_per_node']:.1f} (its arrays)" if e == "tape" else f"{mm['bytes_per_node']:.1f}"
            rows.append([LABELS[e], f"{mm['n']:.0e}", what, size])
    return ("Growth of the process's resident memory (psutil) while building a chain `z = z * y`, "
            "divided by its nodes; for the Tape, the growth when that chain is recorded.\n\n"
            + table(["<Engine", "nodes", "bytes per node", "`sys.getsizeof(node)`"], rows))


def md_tape(R):
    rows = []
    for r in sorted(R["scale"], key=lambda r: (r["shape"], r["n"])):
        if r["shape"] in ("mlp", "dot") and r["tape_forward"] is not None:
            k = r["op_nodes"] / r["nodes"]
            fwd, bwd = r["tape_forward"] * k, r["tape_backward"] * k
            rows.append([r["shape"], f"{r['nodes']:,}", f"{fwd:.2f}", f"{bwd:.2f}", f"{fwd + bwd:.2f}",
                         f"{r['tape_forward'] + r['tape_backward']:.2f}"])
    return ("**mlp**: the demo's loss over enough moons samples (training-shaped: ops are most nodes); "
            "**dot**: `z = z + a_i * b_i` over fresh leaves (half the nodes are leaves, each read and "
            "written per replay). CPU time of `tape.forward()` and `tape.backward()` per node of the "
            "Tape (leaves included), median of replays after a warm-up one.\n\n"
            + table(["<graph", "nodes", "forward", "backward", "forward+backward", "per op node"], rows))


def md_results(R):
    parts = [("Targets", md_targets), ("Moons demo step", md_demo),
             ("Eager step against its floors", lambda R: peers.md_floors(R, medians(R), paired_ratio)),
             ("Tape step against its floors", lambda R: peers.md_tape_floors(R, medians(R), paired_ratio)),
             ("Scaling: ns per node", md_scale),
             ("Memory: bytes per node", md_memory), ("Tape replay: ns per node", md_tape)]
    return ("## Results\n\n" + md_head(R) + "\n" + "".join(f"\n### {h}\n\n{f(R)}" for h, f in parts)
            + f"\nTotal run time: {R['elapsed']:.0f} s.")


def md_readme(R):
    return (f"From `{R['command']}` on {R['date']}: {R['machine']['cpu']}, {R['machine']['cores']} cores, "
            f"Python {R['python']}, GC default; process CPU time, medians.\n\n"
            f"#### Targets\n\n{md_targets(R)}\n#### Moons demo step\n\n{md_demo(R)}")


def md_staircase(R):
    m, mem = medians(R), R["memory"]

    def rss(e, suffix=""):
        b = mem.get(e, {}).get("bytes_per_node")
        return "–" if b is None else f"{b:.0f} B{suffix}"

    steps = [("0", "upstream", "upstream 0.1.0 (default GC)", rss("upstream")),
             ("0′", "upstream-nogc", "upstream, `gc.disable()`", rss("upstream", ", never freed")),
             ("1", "python", "the twin (Python)", rss("python")),
             ("2", "cython", "compiled, eager", rss("cython")),
             ("3", "tape", "compiled, Tape replay", "+ " + rss("tape", " (Tape arrays)")),
             ("–", "c", "hand-written C, no graph", "–")]
    rows = [[k, name, f"**{fmt_ns(m[e]['step'])}**", *(fmt_ns(m[e][ph]) for ph in ("forward", "backward")),
             "–" if e in ("tape", "c") else fmt_ns(m[e]["free"]), fmt_x(paired_ratio(R, "upstream", e)), size]
            for k, e, name, size in steps if e in m]
    return (table(["<", "<engine", "step", "forward", "backward", "free", "vs upstream", "RSS / node"], rows)
            + f"\nPython {R['python']}, GC {gc_text(R)}; {R['date']}, commit {R['git']}; `{R['command']}`. "
            "Times are medians of process CPU time; \"vs upstream\" is the median of per-round ratios; "
            "RSS per node is for a chain of "
            f"{mem.get('cython', {}).get('n', 0):.0e} nodes.")


def write_block(path, name, text, create=False):
    """Replace what lies between <!-- results[:name]:start/end --> in path; False if the markers
    are missing (with create, append the block, or make the file)."""
    tag = f"results:{name}" if name else "results"
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old and end in old and old.index(start) < old.index(end):
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    elif create:
        new = (old.rstrip("\n") + "\n\n" if old else "# Benchmark results\n\n") + block + "\n"
    else:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
    return True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller graphs; writes only "
                   "under benchmarks/_work/ unless an output is named")
    p.add_argument("--from", dest="source", type=Path, help="render this results JSON, measure nothing")
    p.add_argument("--out", type=Path, help="Markdown file whose results block to rewrite "
                   "(default: benchmarks/RESULTS.md, or benchmarks/_work/RESULTS-quick.md with --quick)")
    p.add_argument("--chart", type=Path, help="PNG chart (default: benchmarks/ratios.png, "
                   "or benchmarks/_work/ratios-quick.png with --quick)")
    p.add_argument("--readme", type=Path, help="README whose results:readme block to rewrite "
                   "(default: README.md in a full run, none with --quick)")
    p.add_argument("--porting", type=Path, help="file whose results:porting block to rewrite "
                   "(default: docs/porting.md in a full run, if it has the markers)")
    p.add_argument("--rounds", type=int, help="override the number of demo rounds")
    args = p.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    if args.source:
        R = json.loads(args.source.read_text())
    else:
        cfg = dict(QUICK if args.quick else FULL)
        cfg["rounds"] = args.rounds or cfg["rounds"]
        R = measure(cfg, args.quick)
        (WORK / f"results{suffix}.json").write_text(json.dumps(R, indent=1))
        pyperf_suite(R, WORK / f"demo{suffix}.pyperf.json")
    tracked = not args.quick and not args.source
    out = args.out or (WORK / "RESULTS-quick.md" if not tracked else HERE / "RESULTS.md")
    write_block(out, None, md_results(R), create=True)
    readme = args.readme or (REPO / "README.md" if tracked else None)
    if readme and not write_block(readme, "readme", md_readme(R)):
        print(f"{readme} has no results:readme markers: not written", file=sys.stderr)
    porting = args.porting or (REPO / "docs" / "porting.md" if tracked else None)
    if porting and not write_block(porting, "porting", md_staircase(R)):
        print(f"{porting} has no results:porting markers: not written", file=sys.stderr)
    print(md_results(R))
    print("\nTargets:")
    for _, desc, goal, text, met in targets(R):
        print(f"  [{ {True: 'MET', False: 'NOT MET'}.get(met, 'n/a') }] {desc} {goal}: {text}")
    print(f"\nresults written to {out}" + "".join(f", {f}" for f in (readme, porting) if f))
    png = args.chart or (WORK / "ratios-quick.png" if not tracked else HERE / "ratios.png")
    print(chart.chart(R, LABELS, ENGINES, paired_ratio, png))
    if not R["demo"].get("cython"):
        print("error: the compiled engine's demo step could not be measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

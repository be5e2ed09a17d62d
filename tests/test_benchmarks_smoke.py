"""Smoke test of the benchmark suite: `benchmarks/run.py --quick` runs, writes its tables
under benchmarks/_work/ only, and its results JSON renders into the tracked files' blocks.

Checks the shape of the output only, never a timing: timings belong in
benchmarks/RESULTS.md, not in a pass/fail test on a shared machine.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
WORK = BENCH / "_work"

pytest.importorskip("numpy")
pytest.importorskip("sklearn")
pytest.importorskip("psutil")
pytest.importorskip("pyperf")
sys.path.insert(0, str(BENCH))
import peers  # noqa: E402
import run  # noqa: E402

pytestmark = pytest.mark.slow

ENGINE_ROWS = [run.LABELS[e] for e in run.ENGINES]
SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache", ".hypothesis"}


def snapshot():
    """git status of the checkout (None without git), and every file's mtime outside
    benchmarks/_work/ (bytecode caches and pytest's own folders aside)."""
    status = None
    if shutil.which("git"):
        proc = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True)
        status = proc.stdout if proc.returncode == 0 else None
    mtimes = {}
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and Path(root, d) != WORK]
        for f in files:
            mtimes[os.path.join(root, f)] = os.stat(os.path.join(root, f)).st_mtime_ns
    return status, mtimes


@pytest.fixture(scope="module")
def quick_run():
    env = {k: v for k, v in os.environ.items() if k != "MICROGRAD_PURE_PYTHON"}
    before = snapshot()
    proc = subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)
    after = snapshot()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, (WORK / "RESULTS-quick.md").read_text(), before, after


def table_rows(text, heading):
    """Cells of the Markdown table under heading, header row dropped."""
    rows, started = [], False
    for line in text.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-: ") or not cells[0]:
                rows.append(cells)
        elif started:
            break
    return rows[1:]


def test_quick_run_leaves_the_checkout_clean(quick_run):
    _, _, (status0, mtimes0), (status1, mtimes1) = quick_run
    assert status1 == status0
    changed = sorted(f for f, t in mtimes1.items() if mtimes0.get(f) != t)
    assert changed == []
    assert (WORK / "results-quick.json").is_file() and (WORK / "demo-quick.pyperf.json").is_file()


def test_demo_table_has_every_engine(quick_run):
    _, text, _, _ = quick_run
    rows = {r[0]: r for r in table_rows(text, "### Moons demo step")}
    assert list(rows) == ENGINE_ROWS
    compiled = rows[run.LABELS["cython"]]
    assert compiled[6] == "1.00×"
    for name, cells in rows.items():
        # measured, or skipped with a reason (torch not installed, no compiler, no upstream)
        if not cells[1].startswith("skipped: "):
            assert cells[5].startswith("**") and (cells[9] == "identical" or
                                                   float(cells[9].split()[-1]) < 1e-9), (name, cells)
    for e in ("tape-optim", "floats"):     # ours: always measured
        assert rows[run.LABELS[e]][5].startswith("**"), e
    for e, (module, how) in peers.PEERS.items():
        # an optional peer is measured where its package imports, else skipped saying how to get it
        cells = rows[run.LABELS[e]]
        if importlib.util.find_spec(module) is None:
            assert cells[1] == f"skipped: {module} is not installed (`{how}`)", cells
        else:
            assert cells[5].startswith("**"), cells
    jit_note = "jax.jit of the whole step (value_and_grad of the full-batch loss"
    assert (jit_note in text) == (importlib.util.find_spec("jax") is not None)


def test_eager_floors_table(quick_run):
    _, text, _, _ = quick_run
    rows = {r[0]: r for r in table_rows(text, "### Eager step against its floors")}
    assert set(rows) == {"forward", "backward", "free", "step"} - (set() if shutil.which(
        os.environ.get("CC", "cc")) else {"backward"})
    for part, cells in rows.items():
        assert cells[1] != "–" and cells[2] != "–" and cells[3].endswith("×"), (part, cells)


def test_tape_floors_table(quick_run):
    _, text, _, _ = quick_run
    rows = {r[0]: r for r in table_rows(text, "### Tape step against its floors")}
    assert list(rows) == ["forward", "zero_grad + backward", "optimizer step", "step"]
    has_cc = shutil.which(os.environ.get("CC", "cc")) is not None
    for part, cells in rows.items():
        assert cells[1] != "–" and (cells[4] != "–") == has_cc, (part, cells)
        # the Tape's program in C, an instruction at a time and batched by sample: every part
        # but the optimizer's (which has none)
        loops = has_cc and part != "optimizer step"
        assert (cells[2] != "–" and cells[5].endswith("×")) == loops, (part, cells)
        assert (cells[3] != "–" and cells[6].endswith("×")) == loops, (part, cells)
    if has_cc:
        assert "34,239 instructions" in text


def test_targets_defined_once_printed_and_tabled(quick_run):
    proc, text, _, _ = quick_run
    rows = table_rows(text, "### Targets")
    assert [r[0] for r in rows] == [t[1] for t in run.TARGETS]
    assert all(r[3] in ("yes", "no", "n/a") for r in rows)
    printed = proc.stdout.split("\nTargets:\n", 1)[1]
    for _, desc, *_ in run.TARGETS:
        assert f"] {desc} " in printed


def test_scale_table_against_the_bare_pass(quick_run):
    _, text, _, _ = quick_run
    scale = table_rows(text, "### Scaling: ns per node")
    shapes = {(r[0], r[1]) for r in scale}
    assert {(run.LABELS["cython"], s) for s in ("chain", "wide", "dag")} <= shapes
    if shutil.which(os.environ.get("CC", "cc")):
        assert all(r[7] != "–" and r[8].endswith("×") for r in scale)
    assert "First touch" not in text
    memory = {r[0] for r in table_rows(text, "### Memory: bytes per node")}
    assert {run.LABELS["cython"], run.LABELS["tape"], run.LABELS["python"]} <= memory
    tape = table_rows(text, "### Tape replay: ns per node")
    assert {r[0] for r in tape} == {"mlp", "dot"}
    for row in tape:    # about 1e6 nodes each, and numbers in every column
        assert 0.9e6 <= int(row[1].replace(",", "")) <= 1.1e6
        assert all(float(c) > 0 for c in row[2:])


def test_one_json_renders_every_block(quick_run, tmp_path):
    """RESULTS.md, README's block and porting.md's staircase from the run's JSON; notes
    around the markers survive, and a file without markers is left alone."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Mine\n\nAbove.\n\n<!-- results:start -->\nold\n<!-- results:end -->\n\nBelow.\n")
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:readme:start -->\nold\n<!-- results:readme:end -->\ny\n")
    porting = tmp_path / "porting.md"
    porting.write_text("a\n<!-- results:porting:start -->\nold\n<!-- results:porting:end -->\nb\n")
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    cmd = [sys.executable, str(BENCH / "run.py"), "--from", str(WORK / "results-quick.json"),
           "--out", str(results), "--readme", str(readme), "--porting", str(porting),
           "--chart", str(tmp_path / "ratios.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = results.read_text()
    assert text.startswith("# Mine\n\nAbove.") and text.rstrip().endswith("Below.") and "\nold\n" not in text
    assert "### Targets" in readme.read_text() and readme.read_text().endswith("y\n")
    stair = porting.read_text()
    assert stair.startswith("a\n") and stair.endswith("b\n") and "\nold\n" not in stair
    rows = table_rows(stair, "results:porting:start")
    assert {"2", "3"} <= {r[0] for r in rows} <= {"0", "0′", "1", "2", "3", "–"}
    assert "Python 3." in stair and "GC default" in stair and "process CPU time" in stair
    proc = subprocess.run(cmd[:4] + ["--out", str(tmp_path / "R2.md"), "--porting", str(bare)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and bare.read_text() == "no markers\n"
    assert "has no results:porting markers" in proc.stderr
    data = json.loads((WORK / "results-quick.json").read_text())
    assert data["python"] == sys.version.split()[0] and data["gc_threshold"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in proc.stdout
    else:
        assert (tmp_path / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_jit_whole_stops_at_the_first_count_that_fails():
    """The full run's whole-step jax.jit ladder (--quick tries only the smallest count): a
    count that times out is reported as such and the larger ones are not tried."""
    tried = []

    def worker(task, n, *rest, timeout):
        tried.append(n)
        if n >= 10:
            raise subprocess.TimeoutExpired(task, timeout)
        return {"n_samples": n, "compile_ns": 2e9, "step_ns": 3e6}

    out = peers.measure_jit_whole(worker, [2, 10, 100], lambda msg: None)
    assert tried == [2, 10]
    text = peers.md_notes({"demo": {}, "jit_whole": out})
    assert "2 samples: compiled in 2 s of CPU, then 3 ms per step" in text
    assert f"10 samples: did not compile within {peers.JIT_TIMEOUT} s" in text
    assert text.rstrip().endswith("Larger counts were not tried.")

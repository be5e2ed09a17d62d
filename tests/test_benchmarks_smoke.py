"""Smoke test of the benchmark suite: `benchmarks/run.py --quick` runs and writes its table.

Checks the shape of the output only, never a timing: timings belong in
benchmarks/RESULTS.md, not in a pass/fail test on a shared machine.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "benchmarks" / "run.py"

pytest.importorskip("numpy")
pytest.importorskip("sklearn")

ENGINE_ROWS = [
    "micrograd-compiled (Cython)",
    "micrograd-compiled, Tape replay",
    "micrograd-compiled, pure-Python twin",
    "upstream micrograd 0.1.0",
    "upstream 0.1.0, gc.disable()",
    "PyTorch, 0-d float64 tensors",
    "hand-written C (no autodiff)",
]
TARGET_ROWS = [
    "Demo step vs upstream (default GC)",
    "Demo step vs upstream with gc.disable()",
    "Backward alone vs upstream's backward",
    "Memory per node (compiled)",
    "ns per node, 1e4 vs",
    "Demo step vs PyTorch scalar autograd",
    "Tape replay step vs upstream's eager step",
    "Tape forward+backward at 1e6 nodes",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "RESULTS.md"
    # hand-written notes around the marked section must survive the run
    out.write_text("# My results\n\nNotes above.\n\n<!-- results:start -->\nold\n"
                   "<!-- results:end -->\n\nNotes below.\n")
    env = {k: v for k, v in os.environ.items() if k != "MICROGRAD_PURE_PYTHON"}
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out), "--chart", str(tmp / "ratios.png")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, out.read_text(), tmp


def table_rows(text, heading):
    """First cells of the Markdown table under heading."""
    section = text.split(heading, 1)[1]
    rows = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append(cells)
        elif started:
            break
    return rows[1:]   # drop the header row


def test_results_section_rewritten_notes_kept(quick_run):
    _, text, _ = quick_run
    assert text.startswith("# My results\n\nNotes above.")
    assert text.rstrip().endswith("Notes below.")
    assert text.count("<!-- results:start -->") == 1 and text.count("<!-- results:end -->") == 1
    assert "\nold\n" not in text
    for key in ("| Machine |", "| Python |", "| GC |", "Written by `python benchmarks/run.py --quick` on",
                "| First touch of fresh memory |", "| One bare pass over 56-byte nodes (C) |"):
        assert key in text


def test_page_fault_probe_measures_both_page_sizes():
    """The probe behind the "First touch" row: 4 KiB pages, and huge pages as the engine's
    chunks use them (where the platform has MADV_HUGEPAGE)."""
    import json
    import mmap
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "workers.py"), "pagefault", "8"],
                          capture_output=True, text=True, timeout=120, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(res["ns_per_page"]) == 2 and all(t > 0 for t in res["ns_per_page"])
    assert res["node_bytes"] == 56
    if hasattr(mmap, "MADV_HUGEPAGE") and Path("/sys/kernel/mm/transparent_hugepage").exists():
        assert len(res["ns_per_huge_page"]) == 2
    elif not hasattr(mmap, "MADV_HUGEPAGE"):
        assert res["ns_per_huge_page"] is None


def test_demo_table_has_every_engine(quick_run):
    _, text, _ = quick_run
    rows = {r[0]: r for r in table_rows(text, "### Moons demo step")}
    assert list(rows) == ENGINE_ROWS
    for name, cells in rows.items():
        # measured, or skipped with a reason (torch not installed, no compiler, no upstream)
        assert cells[1].startswith("skipped: ") or re.search(r"\d", cells[5]), (name, cells)
    compiled = rows["micrograd-compiled (Cython)"]
    assert not compiled[1].startswith("skipped")
    assert compiled[6] == "1.00×"
    # every engine that ran computed the same losses as the compiled one
    for name, cells in rows.items():
        if not cells[1].startswith("skipped"):
            assert cells[9] == "identical" or cells[9].startswith("max rel. diff"), (name, cells)
            if cells[9] != "identical":
                assert float(cells[9].split()[-1]) < 1e-9


def test_targets_table(quick_run):
    proc, text, _ = quick_run
    rows = table_rows(text, "### Targets")
    assert len(rows) == len(TARGET_ROWS)
    for (desc, goal, measured, met), expected in zip(rows, TARGET_ROWS):
        assert desc.startswith(expected)
        assert met in ("yes", "no", "n/a")
    assert "Targets:" in proc.stdout


def test_scaling_memory_tape_tables(quick_run):
    _, text, _ = quick_run
    scale = table_rows(text, "### Scaling: ns per node")
    assert {(r[0], r[1]) for r in scale} >= {("micrograd-compiled (Cython)", "chain"),
                                             ("micrograd-compiled (Cython)", "wide")}
    memory = {r[0] for r in table_rows(text, "### Memory: bytes per node")}
    assert {"micrograd-compiled (Cython)", "micrograd-compiled, pure-Python twin"} <= memory
    tape = table_rows(text, "### Tape replay: ns per node")
    assert {r[0] for r in tape} == {"mlp", "dot"}
    for row in tape:    # about 1e6 nodes each, and numbers in every column
        assert 0.9e6 <= int(row[1].replace(",", "")) <= 1.1e6
        assert all(float(c) > 0 for c in row[2:])


def test_chart_written_or_explained(quick_run):
    proc, _, tmp = quick_run
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in proc.stdout
    else:
        assert (tmp / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

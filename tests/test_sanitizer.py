"""The sanitizer build (README, "Sanitizer build"): with MICROGRAD_SANITIZE=1 the extension
is built with AddressSanitizer and the node allocator poisons every slot that holds no live
node, so a read of a freed node is reported even though our chunks are not malloc's."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import subprocess_env
from test_recall import fuzz

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow,         # builds the extension (a minute or two)
              pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree"),
              pytest.mark.skipif(sys.platform != "linux", reason="the sanitizer build is for gcc on Linux")]

SOUND = """
import gc
import micrograd._engine as e
assert e._SANITIZED
x = e.Value(2.0)
for _ in range(3):                      # slots freed, reused and freed again
    r = x
    for i in range(100_000):
        r = (r * 1.0000001 + x).tanh() if i % 7 == 0 else r * 1.0 + 0.5
    r.backward()
    t = e.Tape(r); t.forward(); t.backward()
    del r, t
    gc.collect()
print("ok", x.grad)
"""

# The collector of lecture-style cycles (core/extras.pxi) frees a node whose entry holds
# the only reference to a child with an assigned rule, then looks that child up: the
# child must be gone from the table before the lookup, not freed while being read.
COLLECTED_CHILD = """
import gc
from micrograd._engine import Value
def lecture_node(children):
    out = Value(0.0, tuple(children))
    def _backward():            # a closure on out: out -> table -> fn -> cell -> out
        out.grad
    out._backward = _backward
    return out
for _ in range(100):
    leaf = Value(1.0)
    leaf._backward = lambda: None       # as upstream's __init__ gives every node
    top = lecture_node([leaf])
    del leaf, top
    gc.collect()                        # one lecture node a collection
print("ok")
"""

USE_AFTER_FREE = """
import ctypes
import micrograd._engine as e
keep = [e.Value(float(i)) for i in range(10)]   # the slot's neighbours stay alive
node = keep[0] * keep[1]
address = id(node)
del node
ctypes.string_at(address, 8)             # reads the freed slot: ASAN must stop here
print("not reported")
"""


def asan_runtime():
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc: the sanitizer build needs it")
    libs = []
    for name in ("libasan.so", "libstdc++.so"):
        path = subprocess.run([gcc, f"-print-file-name={name}"], capture_output=True,
                              text=True).stdout.strip()
        if not os.path.isabs(path):
            pytest.skip(f"gcc has no {name}")
        libs.append(path)
    return " ".join(libs)


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """A folder holding the package with the extension built as the README says."""
    preload = asan_runtime()
    tmp = tmp_path_factory.mktemp("sanitized")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".ci-venv", ".nox", "_work", "build", "dist", "*.so", "*.c", "__pycache__", "*.egg-info"))
    env = subprocess_env(MICROGRAD_SANITIZE="1", MICROGRAD_REQUIRE_COMPILED="1")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "-w", str(tmp / "wheel"), str(source)],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp / "site")
    return tmp / "site", preload


def run_sanitized(sanitized, code):
    site, preload = sanitized
    env = subprocess_env(PYTHONPATH=str(site), LD_PRELOAD=preload,
                         ASAN_OPTIONS="detect_leaks=0", PYTHONMALLOC="malloc")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600)


def test_the_sanitizer_build_runs_graphs_without_a_report(sanitized):
    proc = run_sanitized(sanitized, SOUND)
    assert proc.returncode == 0 and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_the_cycle_collector_never_reads_a_node_it_freed(sanitized):
    proc = run_sanitized(sanitized, COLLECTED_CHILD)
    assert proc.returncode == 0 and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]


def test_the_sanitizer_build_reports_a_read_of_a_freed_node(sanitized):
    proc = run_sanitized(sanitized, USE_AFTER_FREE)
    assert proc.returncode != 0 and "not reported" not in proc.stdout
    assert "AddressSanitizer: use-after-poison" in proc.stderr, proc.stderr[-3000:]


def test_remembered_walks_never_read_a_node_that_died(sanitized):
    # graphs rebuilt in the slots of others, held or dropped: a remembered walk's check
    # must read a node only once a live node is found pointing at it
    proc = run_sanitized(sanitized, fuzz(seed=3, iterations=150))
    assert proc.returncode == 0 and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
    assert '"mismatches": []' in proc.stdout, proc.stdout[-2000:]

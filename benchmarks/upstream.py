"""Upstream micrograd 0.1.0 in a side folder: the one installer tests and benchmarks share.

Upstream's import name is ours too (``micrograd``), so it is only ever imported in a
subprocess whose ``PYTHONPATH`` is the folder returned here. Looked for in
``$MICROGRAD_UPSTREAM_PATH``, then in ``benchmarks/_work/upstream`` (kept between runs,
ignored by git); otherwise installed there with ``pip install --target``.
Standard library only: the test suite imports this too.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SPEC = "micrograd==0.1.0"
CACHE = Path(__file__).resolve().parent / "_work" / "upstream"


def is_upstream(path):
    """Does path hold upstream micrograd 0.1.0 (and not this package)?"""
    engine_py = Path(path) / "micrograd" / "engine.py" if path else None
    if engine_py is None or not engine_py.is_file():
        return False
    text = engine_py.read_text()
    return "only supporting int/float powers for now" in text and "BACKEND" not in text


def ensure_upstream(dest=CACHE, timeout=300):
    """(folder, note): a folder holding upstream micrograd 0.1.0, installing it there if
    needed; (None, why) if that fails (offline, pip missing, ...)."""
    given = os.environ.get("MICROGRAD_UPSTREAM_PATH")
    if given and is_upstream(given):
        return Path(given), f"from MICROGRAD_UPSTREAM_PATH={given}"
    dest = Path(dest)
    if is_upstream(dest):
        return dest, f"reused {dest}"
    partial = dest.with_name(dest.name + ".partial")   # a killed install leaves no half folder
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-input", "--no-deps", "--target", str(partial), SPEC]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        detail = (proc.stderr or proc.stdout).strip()[-300:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        detail = repr(exc)
    if not is_upstream(partial):
        shutil.rmtree(partial, ignore_errors=True)
        return None, f"upstream micrograd is not installed: `{' '.join(cmd)}` failed: {detail}"
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest, f"installed {SPEC} in {time.monotonic() - t0:.1f} s"


def env_for(path, base=None):
    """Environment in which `import micrograd` finds upstream at path."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = str(path)
    env.pop("MICROGRAD_PURE_PYTHON", None)
    return env


def run(path, code, timeout=300):
    """Run code in a subprocess with upstream importable as `micrograd`; return stdout.

    Raises RuntimeError with upstream's stderr if the code fails, or if `micrograd`
    resolves to anything but the folder at path."""
    guard = ("import micrograd, os\n"
             "assert os.path.realpath(os.path.dirname(os.path.dirname(micrograd.__file__)))"
             f" == os.path.realpath({str(path)!r}), micrograd.__file__\n")
    proc = subprocess.run([sys.executable, "-c", guard + code], env=env_for(path),
                          capture_output=True, text=True, timeout=timeout, cwd=str(path))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return proc.stdout


if __name__ == "__main__":
    folder, note = ensure_upstream()
    print(folder or "", note, sep="\n")
    sys.exit(folder is None)

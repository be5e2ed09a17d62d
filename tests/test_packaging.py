"""The distribution: the sdist ships the .pyx, and a wheel built from it works without Cython."""
import os
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("build", reason="the `build` package (test extra) builds the sdist")
# Building an sdist, a wheel and a venv takes minutes: slow.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(),
                                 reason="needs the source tree")]


def run(*cmd, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    src = out / "src"
    # build from a copy of the tracked tree, so local build products cannot leak in
    files = run("git", "ls-files", cwd=ROOT).split()
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    run(sys.executable, "-m", "build", "--sdist", "--outdir", out / "dist", src)
    (path,) = (out / "dist").glob("*.tar.gz")
    return path


def test_sdist_contains_every_source_file(sdist):
    """Every tracked file under src/ (the .pyx and whatever it includes, the twin, the
    typing files) ships, so a wheel can be built from the sdist alone."""
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = run("git", "ls-files", "src", cwd=ROOT).split()
    assert {"src/_engine.pyx", "src/micrograd/_engine.pyi", "src/micrograd/py.typed"} <= set(tracked)
    for needed in tracked + ["setup.py", "pyproject.toml", "README.md"]:
        assert needed in names, f"{needed} missing from {sdist.name}"
    assert "src/_engine.c" not in names        # generated C is rebuilt from the .pyx


def test_wheel_built_from_the_sdist_works_without_cython(sdist, tmp_path):
    unpacked = tmp_path / "unpacked"
    with tarfile.open(sdist) as tar:
        tar.extractall(unpacked)
    (project,) = unpacked.iterdir()
    run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "wheels", project)
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    py = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run(py, "-m", "pip", "install", "--no-deps", "--no-index", wheel)
    out = run(py, "-c",
              "import importlib.util as u, micrograd.engine as e\n"
              "assert u.find_spec('Cython') is None, 'Cython present'\n"
              "from micrograd.nn import MLP\n"
              "v = e.Value(-4.0); y = (v * 2 + 1).relu() + v ** 2; y.backward()\n"
              "print(e.BACKEND, y.data, v.grad, len(MLP(2, [16, 16, 1]).parameters()))",
              cwd=tmp_path)
    assert out.split() == ["cython", "16.0", "-8.0", "337"]

"""The distribution: metadata PyPI shows, the sdist ships the .pyx, a wheel built from it
works without Cython, and without a C compiler the install falls back to the twin."""
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:                 # Python < 3.11: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
needs_tree = pytest.mark.skipif(not PYPROJECT.exists(), reason="needs the source tree")
# What a build leaves in the tree, never part of a distribution.
BUILD_PRODUCTS = {".git", ".nox", ".ci-venv", "build", "dist", "__pycache__", ".pytest_cache",
                  ".hypothesis", "_work"}
GIT = shutil.which("git") and (ROOT / ".git").exists()


def run(*cmd, cwd=None, env=None, check=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def source_files():
    """The tracked files (git), or in an unpacked sdist every file but build products."""
    if GIT:
        return run("git", "ls-files", cwd=ROOT).stdout.split()
    return sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                  if p.is_file() and not BUILD_PRODUCTS & set(p.relative_to(ROOT).parts)
                  and p.suffix not in (".so", ".pyd") and not p.name.endswith(".egg-info")
                  and p.relative_to(ROOT).as_posix() not in ("src/_engine.c", "src/_engine.html"))


def extract(sdist, dest):
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):     # 3.12+, 3.9.17+, 3.10.12+, 3.11.4+
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    (project,) = Path(dest).iterdir()
    return project


def fresh_venv(path):
    venv.create(path, with_pip=True)
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_env(**overrides):
    """os.environ without what would make a venv's Python (or its pip) see another micrograd."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MICROGRAD_PURE_PYTHON")}
    return {**env, **overrides}


# Run in a venv: prints where micrograd came from, then what it computes.
PROBE = ("import micrograd.engine as e\n"
         "print(e.__file__.startswith(__import__('sys').prefix))\n"
         "v = e.Value(-4.0); y = (v * 2 + 1).relu() + v ** 2; y.backward()\n"
         "print(e.BACKEND, y.data, v.grad)")


# ---- metadata and README, as PyPI shows them ------------------------------------------

@needs_tree
def test_classifiers_name_the_versions_requires_python_allows():
    """noxfile.py tests exactly the classifiers' versions (it reads them); the lowest one
    is requires-python's bound, and only CPython is claimed."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    classifiers = project["classifiers"]
    versions = [c.rsplit(" ", 1)[1] for c in classifiers
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions == ["3.9", "3.10", "3.11", "3.12", "3.13"]
    assert project["requires-python"] == f">={versions[0]}"
    assert "Programming Language :: Python :: Implementation :: CPython" in classifiers
    assert "Typing :: Typed" in classifiers
    assert (ROOT / "src/micrograd/py.typed").exists()
    assert "nox.project.python_versions" in (ROOT / "noxfile.py").read_text()


@needs_tree
def test_readme_links_are_absolute_and_project_links_name_existing_files():
    """PyPI renders README.md out of the repository: a relative link (docs/porting.md) or
    an in-page anchor would be dead there. Links into this project's repository must name
    a file that exists (on the main branch once this tree is pushed)."""
    urls = tomllib.loads(PYPROJECT.read_text())["project"]["urls"]
    source = urls["Source"]
    assert set(urls) >= {"Homepage", "Source", "Issues", "Documentation"}
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r"<img [^>]*src=\"([^\"]+)\"", readme)
    assert len(links) >= 5
    for link in links:
        assert re.match(r"https?://", link), f"README link {link!r} is relative: dead on PyPI"
        if link.startswith(source + "/blob/main/"):
            path = link[len(source + "/blob/main/"):].split("#")[0]
            assert (ROOT / path).is_file(), f"README links {path}, which does not exist"
    for url in (urls["Documentation"], urls["Issues"], urls["Homepage"]):
        assert url.startswith(source)


# ---- the sdist -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    pytest.importorskip("build", reason="the `build` package (test extra) builds the sdist")
    out = tmp_path_factory.mktemp("sdist")
    src = out / "src"
    # build from a copy of the source files, so local build products cannot leak in
    for name in source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    run(sys.executable, "-m", "build", "--sdist", "--outdir", out / "dist", src)
    (path,) = (out / "dist").glob("*.tar.gz")
    return path


# Building an sdist, a wheel and a venv takes minutes: slow.
@pytest.mark.slow
@needs_tree
def test_sdist_contains_every_source_file(sdist):
    """Every tracked file under src/ (the .pyx and whatever it includes, the twin, the
    typing files) ships, so a wheel can be built from the sdist alone; so do the pages the
    README links and the chart benchmarks/README.md shows."""
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = ["setup.py", "pyproject.toml", "README.md", "docs/porting.md", "benchmarks/ratios.png",
              "benchmarks/RESULTS.md", "noxfile.py", "src/_engine.pyx", "src/micrograd/_engine.pyi",
              "src/micrograd/py.typed"]
    needed += [n for n in source_files() if n.split("/")[0] in ("src", "tests", "benchmarks", "docs")]
    for name in needed:
        assert name in names, f"{name} missing from {sdist.name}"
    assert "src/_engine.c" not in names        # generated C is rebuilt from the .pyx
    assert not any("_work/" in n or n.endswith((".so", ".pyd")) for n in names)


@pytest.mark.slow
@needs_tree
def test_wheel_built_from_the_sdist_works_without_cython(sdist, tmp_path):
    project = extract(sdist, tmp_path / "unpacked")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "wheels", project,
        env={**os.environ, "MICROGRAD_REQUIRE_COMPILED": "1"})
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    py = fresh_venv(tmp_path / "env")
    run(py, "-m", "pip", "install", "--no-deps", "--no-index", wheel, env=venv_env())
    out = run(py, "-c",
              "import importlib.util as u\n"
              "assert u.find_spec('Cython') is None, 'Cython present'\n"
              "from micrograd.nn import MLP; print(len(MLP(2, [16, 16, 1]).parameters()))\n" + PROBE,
              cwd=tmp_path, env=venv_env()).stdout
    assert out.split() == ["337", "True", "cython", "16.0", "-8.0"]


@pytest.mark.slow
@needs_tree
def test_install_from_the_sdist_without_a_c_compiler_gives_the_twin(sdist, tmp_path):
    """pip install of the sdist where the C compiler is missing (CC names no program):
    the install succeeds and says why it is slow, the import warns, the twin computes;
    with MICROGRAD_REQUIRE_COMPILED=1 the same install fails instead."""
    py = fresh_venv(tmp_path / "env")
    no_cc = venv_env(CC=str(tmp_path / "no-such-compiler"), PIP_NO_CACHE_DIR="1")
    no_cc.pop("MICROGRAD_REQUIRE_COMPILED", None)
    proc = run(py, "-m", "pip", "install", "-v", "--no-deps", sdist, env=no_cc)
    log = proc.stdout + proc.stderr
    assert "WARNING: micrograd-compiled could not compile its C core" in log
    assert "no-such-compiler" in log and "MICROGRAD_REQUIRE_COMPILED=1" in log
    out = run(py, "-W", "always", "-c", PROBE, cwd=tmp_path, env=venv_env())
    assert out.stdout.split() == ["True", "python", "16.0", "-8.0"]
    assert "RuntimeWarning: micrograd: the compiled core could not be imported" in out.stderr
    assert "reinstall with a C compiler" in out.stderr

    py = fresh_venv(tmp_path / "env-strict")
    proc = run(py, "-m", "pip", "install", "--no-deps", sdist, check=False,
               env={**no_cc, "MICROGRAD_REQUIRE_COMPILED": "1"})
    assert proc.returncode != 0
    assert "no-such-compiler" in proc.stdout + proc.stderr
    assert run(py, "-c", "import micrograd", check=False, env=venv_env()).returncode != 0

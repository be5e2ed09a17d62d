"""Installing: LICENSE in the sdist and the wheel; the micrograd/ folder shared with upstream.

Upstream micrograd 0.1.0 installs micrograd/__init__.py, engine.py and nn.py; this package
installs the same three and more. pip overwrites one's files with the other's and, on
uninstall, deletes the paths in its record whoever wrote them last. The folder states that
leaves are rebuilt here from our real files and upstream's, and imported in a subprocess.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import micrograd

ROOT = Path(__file__).resolve().parent.parent
OURS = Path(micrograd.__file__).resolve().parent
UPSTREAM_FILES = ("__init__.py", "engine.py", "nn.py")

PROBE = r"""
try:
    import micrograd
    from micrograd.engine import Value
    from micrograd.nn import MLP
except ImportError as exc:
    print("error", type(exc).__name__, isinstance(exc, ImportError))
    print(exc)
else:
    if getattr(micrograd, "__file__", None) is None:
        kind = "namespace-package"              # no __init__.py
    else:
        kind = "ours" if hasattr(micrograd, "BACKEND") else "upstream"
    print("ok", kind, Value.__module__)
    print((Value(2.0) * Value(3.0)).data)
"""


def make_folder(tmp_path, upstream_path, over=(), delete=(), ours=True):
    """tmp_path/site/micrograd: our files (if ours), upstream's files named in over copied
    on top, then the files named in delete removed. Returns tmp_path/site."""
    site = tmp_path / "site"
    folder = site / "micrograd"
    if ours:
        shutil.copytree(OURS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        folder.mkdir(parents=True)
    for name in over:
        shutil.copy2(Path(upstream_path) / "micrograd" / name, folder / name)
    for name in delete:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
        else:
            (folder / name).unlink()
    return site


def probe(site):
    # -S: no site-packages, so an installed copy of this package (regular, or an editable
    # install's finder) cannot shadow the folder states built here
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE], env=env, cwd=site.parent,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status, message = proc.stdout.split("\n", 1)
    return status, message.strip()


def assert_mixed_install_error(status, message, *problems):
    assert status == "error MixedInstallError True"
    assert "micrograd-compiled" in message and "upstream micrograd" in message
    assert ("`pip uninstall -y micrograd micrograd-compiled` then "
            "`pip install micrograd-compiled`") in message
    for problem in problems:
        assert problem in message, message


def test_our_folder_imports(tmp_path, upstream_path):
    status, message = probe(make_folder(tmp_path, upstream_path))
    assert status.startswith("ok ours micrograd._") and message == "6.0"


def test_upstream_folder_imports_as_upstream(tmp_path, upstream_path):
    site = make_folder(tmp_path, upstream_path, over=UPSTREAM_FILES, ours=False)
    assert probe(site) == ("ok upstream micrograd.engine", "6.0")


@pytest.mark.parametrize("over, problems", [
    (["engine.py"], ["engine.py is not micrograd-compiled's"]),
    (["nn.py"], ["nn.py is not micrograd-compiled's"]),
    (["engine.py", "nn.py"], ["engine.py is not micrograd-compiled's",
                              "nn.py is not micrograd-compiled's"]),
])
def test_upstream_files_beside_our_init_are_refused(tmp_path, upstream_path, over, problems):
    status, message = probe(make_folder(tmp_path, upstream_path, over=over))
    assert_mixed_install_error(status, message, *problems)


@pytest.mark.parametrize("missing", ["engine.py", "nn.py", "_pure", "viz.py", "demo.py",
                                     "__main__.py"])
def test_our_missing_files_are_named(tmp_path, upstream_path, missing):
    status, message = probe(make_folder(tmp_path, upstream_path, delete=[missing]))
    assert_mixed_install_error(status, message, f"{missing} is missing")


def test_ours_installed_over_upstream_is_ours(tmp_path, upstream_path):
    # pip install micrograd, then pip install micrograd-compiled: every upstream file is
    # overwritten by ours
    site = make_folder(tmp_path, upstream_path)
    assert probe(site)[0].startswith("ok ours")


def test_upstream_installed_over_ours_is_upstream_undetected(tmp_path, upstream_path):
    # pip install micrograd-compiled, then pip install micrograd: upstream's empty __init__.py
    # replaces ours, so none of our code runs at import; our other modules are left over
    site = make_folder(tmp_path, upstream_path, over=UPSTREAM_FILES)
    assert probe(site) == ("ok upstream micrograd.engine", "6.0")


def test_upstream_uninstalled_after_ours_leaves_a_namespace_package(tmp_path, upstream_path):
    # either order of installs, then pip uninstall micrograd: upstream's record deletes
    # __init__.py, engine.py and nn.py; Python imports the rest as a namespace package
    site = make_folder(tmp_path, upstream_path, delete=UPSTREAM_FILES)
    status, message = probe(site)
    assert status == "error ModuleNotFoundError True"
    assert message == "No module named 'micrograd.engine'"


def test_init_alone_deleted_imports_ours_silently(tmp_path, upstream_path):
    site = make_folder(tmp_path, upstream_path, delete=["__init__.py"])
    status, message = probe(site)
    assert status.startswith("ok namespace-package micrograd._")   # our Value, no check ran
    assert message == "6.0"


# ---------------------------------------------------------------------------------
# LICENSE in the sdist and the wheel
# ---------------------------------------------------------------------------------
def run(*cmd, cwd=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_license_in_sdist_and_wheel(tmp_path):
    pytest.importorskip("build", reason="the `build` package (test extra) builds the sdist")
    src = tmp_path / "src"
    for name in run("git", "ls-files", cwd=ROOT).split():     # the tracked tree only
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    license_text = (ROOT / "LICENSE").read_text()
    assert "Copyright (c) 2026 micrograd-compiled contributors" in license_text
    assert "Copyright (c) 2020 Andrej Karpathy" in license_text
    # sdist first, then the wheel built from the unpacked sdist
    run(sys.executable, "-m", "build", "--outdir", tmp_path / "dist", src)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        assert "LICENSE" in members, sorted(members)
        assert tar.extractfile(members["LICENSE"]).read().decode() == license_text
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (path,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert whl.read(path).decode() == license_text
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = whl.read(meta).decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata

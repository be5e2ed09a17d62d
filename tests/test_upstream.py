"""Against upstream micrograd 0.1.0 itself: its own tests, and its moons demo step by step."""
import hashlib
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import (TESTS_DIR, engine_name, subprocess_env, upstream_demo_steps,
                      upstream_installer)

UPSTREAM_TESTS = TESTS_DIR / "upstream" / "test_engine_upstream.py"
# sha256 of test/test_engine.py in the micrograd-0.1.0 sdist on PyPI
UPSTREAM_TESTS_SHA256 = "27142177f5badd0f3aa0ae1a78ae91b0017cd08d9e44a3e0f774142c0f53d531"


def test_upstreams_own_tests_pass_unchanged(engine):
    pytest.importorskip("torch", reason="upstream's own tests compare with torch")
    env = subprocess_env(MICROGRAD_PURE_PYTHON="1" if engine_name(engine) == "python" else "0")
    check = subprocess.run([sys.executable, "-c",
                            "import micrograd.engine as e; print(e.BACKEND, e.__file__)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    active, engine_file = check.stdout.split()
    assert active == engine_name(engine)
    import micrograd.engine as ours      # this package, wherever it is installed (not upstream)
    assert Path(engine_file).resolve() == Path(ours.__file__).resolve()
    # --noconftest: run the file as upstream does, without this suite's fixtures
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--noconftest", str(UPSTREAM_TESTS)],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=UPSTREAM_TESTS.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout


def test_upstream_test_file_is_verbatim():
    digest = hashlib.sha256(UPSTREAM_TESTS.read_bytes()).hexdigest()
    assert digest == UPSTREAM_TESTS_SHA256, "tests/upstream/test_engine_upstream.py was edited"


@pytest.mark.slow
def test_pinned_hash_is_upstreams_sdist(tmp_path):
    """The pinned sha256 is that of the file in the sdist on PyPI (needs the network)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                           "--no-binary", ":all:", "--disable-pip-version-check",
                           "--dest", str(tmp_path), upstream_installer.SPEC],
                          capture_output=True, text=True, timeout=300)
    sdists = list(tmp_path.glob("micrograd-0.1.0.tar.gz"))
    if proc.returncode != 0 or not sdists:
        pytest.skip(f"the micrograd 0.1.0 sdist could not be downloaded: {proc.stderr[-300:]}")
    with tarfile.open(sdists[0]) as tar:
        text = tar.extractfile("micrograd-0.1.0/test/test_engine.py").read()
    assert hashlib.sha256(text).hexdigest() == UPSTREAM_TESTS_SHA256
    assert text == UPSTREAM_TESTS.read_bytes()


def assert_same_history(ours, theirs, rel=1e-9):
    assert len(ours) == len(theirs)
    for k, ((loss, acc), (up_loss, up_acc)) in enumerate(zip(ours, theirs)):
        assert math.isclose(loss, up_loss, rel_tol=rel, abs_tol=0.0), (k, loss, up_loss)
        assert acc == up_acc, (k, acc, up_acc)


@pytest.fixture(scope="module")
def upstream_first_steps(upstream_path):
    """Upstream's first 3 demo steps (~1 s), for the fast suite."""
    return upstream_demo_steps(upstream_path, 3)


@pytest.mark.parametrize("tape", [False, True], ids=["eager", "tape"])
def test_moons_demo_first_steps_match_upstream(engine, tape, demo_history,
                                               upstream_first_steps):
    ours = demo_history(engine_name(engine), tape, len(upstream_first_steps))
    assert_same_history(ours, upstream_first_steps)
    # the notebook's first loss and accuracy
    assert upstream_first_steps[0] == pytest.approx([0.8958441028683222, 0.5], rel=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("tape", [False, True], ids=["eager", "tape"])
def test_moons_demo_matches_upstream(engine, tape, demo_history, upstream_demo_history):
    ours = demo_history(engine_name(engine), tape)
    assert_same_history(ours, upstream_demo_history)
    assert len(ours) == 100
    # and it learned: upstream's notebook reaches 100% accuracy
    assert ours[-1][1] == 1.0
    assert ours[-1][0] < 0.05 < ours[0][0]


@pytest.mark.slow
def test_upstream_demo_history_is_sane(upstream_demo_history):
    first, last = upstream_demo_history[0], upstream_demo_history[-1]
    assert first == pytest.approx([0.8958441028683222, 0.5], rel=1e-9)
    assert last[1] == 1.0

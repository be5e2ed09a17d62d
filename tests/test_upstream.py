"""Against upstream micrograd 0.1.0 itself: its own tests, and its moons demo step by step."""
import math
import os
import subprocess
import sys

import pytest

from conftest import TESTS_DIR

UPSTREAM_TESTS = os.path.join(TESTS_DIR, "upstream", "test_engine_upstream.py")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MICROGRAD_PURE_PYTHON")}
    env.update(extra)
    return env


@pytest.mark.parametrize("pure, backend", [("0", "cython"), ("1", "python")],
                         ids=["cython", "python"])
def test_upstreams_own_tests_pass_unchanged(pure, backend):
    pytest.importorskip("torch")
    env = clean_env(MICROGRAD_PURE_PYTHON=pure)
    check = subprocess.run([sys.executable, "-c",
                            "import micrograd.engine as e; print(e.BACKEND, e.__file__)"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    active, engine_file = check.stdout.split()
    assert active == backend
    import micrograd.engine as ours      # this package, wherever it is installed (not upstream)
    assert os.path.realpath(engine_file) == os.path.realpath(ours.__file__)
    # --noconftest: run the file as upstream does, without this suite's fixtures
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--noconftest", UPSTREAM_TESTS],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(UPSTREAM_TESTS))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout, proc.stdout


def test_upstream_test_file_is_verbatim():
    with open(UPSTREAM_TESTS) as f:
        text = f.read()
    assert text.startswith("import torch\nfrom micrograd.engine import Value\n")
    assert "def test_sanity_check():" in text and "def test_more_ops():" in text
    assert text.count("def test_") == 2


def assert_same_history(ours, theirs, rel=1e-9):
    assert len(ours) == len(theirs) == 100
    for k, ((loss, acc), (up_loss, up_acc)) in enumerate(zip(ours, theirs)):
        assert math.isclose(loss, up_loss, rel_tol=rel, abs_tol=0.0), (k, loss, up_loss)
        assert acc == up_acc, (k, acc, up_acc)


@pytest.mark.parametrize("tape", [False, True], ids=["eager", "tape"])
@pytest.mark.parametrize("engine", ["cython", "python"])
def test_moons_demo_matches_upstream(engine, tape, demo_history, upstream_demo_history):
    ours = demo_history(engine, tape)
    assert_same_history(ours, upstream_demo_history)
    # and it learned: upstream's notebook reaches 100% accuracy
    assert ours[-1][1] == 1.0
    assert ours[-1][0] < 0.05 < ours[0][0]


def test_upstream_demo_history_is_sane(upstream_demo_history):
    first, last = upstream_demo_history[0], upstream_demo_history[-1]
    assert first == pytest.approx([0.8958441028683222, 0.5], rel=1e-9)
    assert last[1] == 1.0

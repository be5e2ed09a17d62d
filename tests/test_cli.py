"""`python -m micrograd` end to end, in subprocesses, on a few steps.

The tests that train or time (each starts processes that import numpy and scikit-learn)
are marked slow; the rest take seconds."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

FEW = ["--steps", "3", "--samples", "20"]
LOSS = re.compile(r"final \(step 2\): loss (\d+\.\d{10}), accuracy (\d+\.\d)%")
RATIO = re.compile(r"compiled is (\d+\.\d)x faster than the pure-Python twin")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MICROGRAD_PURE_PYTHON", "MICROGRAD_UPSTREAM_PATH")}
    if "PYTHONPATH" in extra and env.get("PYTHONPATH"):     # in front of a source checkout's path
        extra["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
    env.update(extra)
    return env


def cli(*args, **extra):
    return subprocess.run([sys.executable, "-m", "micrograd", *args], capture_output=True,
                          text=True, env=clean_env(**extra), timeout=300)


@pytest.mark.slow
def test_default_engine_trains_and_compares():
    proc = cli(*FEW)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "engine cython (eager)" in out
    loss, acc = LOSS.search(out).groups()
    assert 0 < float(loss) < 10 and 0 <= float(acc) <= 100
    assert float(RATIO.search(out).group(1)) > 1     # the compiled core is the faster one
    assert re.search(r"Python \d+\.\d+\.\d+, gc (en|dis)abled", out)
    assert "upstream not installed (pip install --target DIR micrograd==0.1.0" in out


@pytest.mark.slow
def test_tape_and_python_engine_give_the_same_numbers():
    eager = cli(*FEW, "--no-compare")
    tape = cli(*FEW, "--no-compare", "--tape")
    twin = cli(*FEW, "--no-compare", "--engine", "python")
    for proc in (eager, tape, twin):
        assert proc.returncode == 0, proc.stderr
        assert "faster" not in proc.stdout   # --no-compare
    assert "engine cython (tape replay)" in tape.stdout
    assert "engine python (eager)" in twin.stdout
    finals = {LOSS.search(p.stdout).groups() for p in (eager, tape, twin)}
    assert len(finals) == 1, finals


@pytest.mark.slow
def test_tape_comparison():
    proc = cli(*FEW, "--tape", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "step 0 loss" not in proc.stdout   # --quiet: no per-step lines
    assert "speed, tape replay steps" in proc.stdout and RATIO.search(proc.stdout)


@pytest.mark.slow
def test_console_script():
    script = Path(sys.executable).with_name("micrograd")
    if not script.exists():
        pytest.skip("the `micrograd` console script is not installed next to this Python")
    proc = subprocess.run([str(script), *FEW, "--no-compare"], capture_output=True, text=True,
                          env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert LOSS.search(proc.stdout)


@pytest.mark.slow
def test_plot_writes_a_png(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    path = tmp_path / "out.png"
    proc = cli(*FEW, "--no-compare", "--plot", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"decision boundary written to {path}" in proc.stdout
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024
    pixels = image.imread(str(path))
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.shape[2] in (3, 4) and pixels.std() > 0.05   # not a blank picture


def test_plot_into_a_missing_directory_fails_before_training(tmp_path):
    proc = cli(*FEW, "--plot", str(tmp_path / "nope" / "out.png"))
    assert proc.returncode == 1
    assert "no such directory" in proc.stderr and "moons demo" not in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--steps", "-3"], "argument --steps: must be at least 1, got -3"),
    (["--steps", "three"], "argument --steps: expected an integer, got 'three'"),
    (["--samples", "1"], "argument --samples: must be at least 2"),
    (["--seed", str(2**32)], "argument --seed: must be below 2**32"),
    (["--engine", "rust"], "argument --engine: invalid choice: 'rust'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_exit_2_with_a_clear_message(args, message):
    proc = cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.startswith("usage: micrograd")
    assert proc.stdout == ""


@pytest.mark.slow
def test_cython_engine_refused_when_the_twin_is_selected():
    proc = cli(*FEW, MICROGRAD_PURE_PYTHON="1")
    assert proc.returncode == 1
    assert "--engine cython" in proc.stderr and "MICROGRAD_PURE_PYTHON" in proc.stderr
    assert cli(*FEW, "--no-compare", "--engine", "python", MICROGRAD_PURE_PYTHON="1").returncode == 0


def test_missing_demo_dependency_names_the_extra(tmp_path):
    blocked = tmp_path / "sklearn"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('blocked', name='sklearn')\n")
    proc = cli(*FEW, PYTHONPATH=str(tmp_path))
    assert proc.returncode == 1
    assert "pip install 'micrograd-compiled[demo]'" in proc.stderr and "sklearn" in proc.stderr


@pytest.mark.slow
def test_upstream_path_that_holds_no_upstream(tmp_path):
    proc = cli(*FEW, "--upstream-path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "upstream could not be timed: no upstream micrograd in" in proc.stdout


@pytest.mark.slow
def test_upstream_is_timed(upstream_path):
    proc = cli(*FEW, MICROGRAD_UPSTREAM_PATH=str(upstream_path))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"compiled is \d+\.\dx faster than upstream micrograd", proc.stdout)

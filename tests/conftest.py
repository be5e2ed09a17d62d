"""Shared fixtures: both engines, an nn module per engine, upstream micrograd 0.1.0.

Every test that takes ``engine`` runs twice: against the compiled core
(``micrograd._engine``) and against its pure-Python twin (``micrograd._pure``).

Upstream micrograd 0.1.0 has the same import name as this package, so it is only
ever imported in a subprocess with ``PYTHONPATH`` pointing at it. It is looked for in
``$MICROGRAD_UPSTREAM_PATH``, then ``/tmp/upstream``, and otherwise installed with
``pip install --target <tmp dir> micrograd==0.1.0 --no-deps``; tests that need it skip
with the reason if that install fails.

Upstream's moons demo takes ~30 s for 100 steps, so when a collected test asks for
``upstream_demo_history`` the run is started in the background right after collection
and the suite's other tests run meanwhile.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from micrograd import demo as _demo

# tests/upstream/ holds upstream's own test file; it imports torch at module level and
# is run only in a subprocess by test_upstream.py, never collected by this session.
collect_ignore = ["upstream"]

ENGINES = ["cython", "python"]
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def engine_name(module):
    """'cython' or 'python' for micrograd._engine / micrograd._pure."""
    return "cython" if module.__name__ == "micrograd._engine" else "python"


@pytest.fixture(params=ENGINES, ids=ENGINES)
def engine(request):
    """The engine module (micrograd._engine or micrograd._pure): Value and Tape."""
    yield _demo.engine_module(request.param)


@pytest.fixture
def nn(engine):
    """A fresh copy of micrograd.nn whose Value is the engine's."""
    return _demo.nn_module(engine_name(engine))


def lecture_graph(Value):
    """Karpathy's lecture graph, L = (a*b + c) * f, labelled as there (by keyword and by
    setting .label): returns (a, b, c, d, e, f, L); nothing is run backward yet."""
    a = Value(2.0, label="a")
    b = Value(-3.0, label="b")
    c = Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    f = Value(-2.0, label="f")
    L = d * f
    L.label = "L"
    return a, b, c, d, e, f, L


def walk(root):
    """Every node below root (root included), reached through _prev as a user would."""
    seen, stack, out = set(), [root], []
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            out.append(v)
            stack.extend(v._prev)
    return out


# ---------------------------------------------------------------------------------
# Our own demo runs, cached for the session (the twin's eager 100 steps take ~10 s
# and are compared both with upstream and with the tape).
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def demo_history():
    cache = {}

    def get(engine, tape=False, steps=100):
        key = (engine, tape, steps)
        if key not in cache:
            cache[key] = [(float(loss), float(acc))
                          for loss, acc in _demo.Demo(engine).train(steps, tape=tape)]
        return cache[key]

    return get


# ---------------------------------------------------------------------------------
# Upstream micrograd 0.1.0
# ---------------------------------------------------------------------------------
def is_upstream(path):
    """Does path hold upstream micrograd 0.1.0 (not this package)?"""
    if not path:
        return False
    engine_py = os.path.join(path, "micrograd", "engine.py")
    if not os.path.isfile(engine_py):
        return False
    with open(engine_py) as f:
        text = f.read()
    return "only supporting int/float powers for now" in text and "BACKEND" not in text


_upstream = {}   # 'path' or 'error'


def ensure_upstream(make_dir=None):
    """Path of an upstream micrograd 0.1.0 install, installing it if needed; None on failure."""
    if "path" in _upstream or "error" in _upstream:
        return _upstream.get("path")
    for candidate in (os.environ.get("MICROGRAD_UPSTREAM_PATH"), "/tmp/upstream"):
        if is_upstream(candidate):
            _upstream["path"] = candidate
            return candidate
    target = make_dir() if make_dir else tempfile.mkdtemp(prefix="micrograd-upstream-")
    target = str(target)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--target", target, "micrograd==0.1.0"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        failed = proc.returncode != 0
        detail = (proc.stderr or proc.stdout).strip()[-500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        failed, detail = True, repr(exc)
    if failed or not is_upstream(target):
        _upstream["error"] = ("upstream micrograd 0.1.0 is not installed and "
                              f"`{' '.join(cmd)}` failed: {detail}")
        return None
    _upstream["path"] = target
    return target


def upstream_env(path):
    env = dict(os.environ)
    env["PYTHONPATH"] = path
    env.pop("MICROGRAD_PURE_PYTHON", None)
    return env


def run_upstream(path, code, timeout=300):
    """Run code with upstream micrograd importable as `micrograd`; return its stdout."""
    guard = ("import micrograd, os\n"
             "assert os.path.realpath(os.path.dirname(os.path.dirname(micrograd.__file__)))"
             f" == os.path.realpath({path!r}), micrograd.__file__\n")
    proc = subprocess.run([sys.executable, "-c", guard + code], env=upstream_env(path),
                          capture_output=True, text=True, timeout=timeout, cwd=path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def upstream_path(tmp_path_factory):
    path = ensure_upstream(lambda: tmp_path_factory.mktemp("upstream"))
    if path is None:
        pytest.skip(_upstream["error"])
    return path


# Upstream's moons demo, expression for expression as its demo.ipynb (the same code as
# micrograd.demo). Two additions that change no number: the cyclic GC is off, and after
# each step the out <-> _backward closure cycles of the spent graph are cut so that
# reference counting frees it (with the GC on, the run takes minutes instead of ~30 s).
UPSTREAM_DEMO = r'''
import gc, json, random, sys
import numpy as np
from sklearn.datasets import make_moons
import micrograd
from micrograd.engine import Value
from micrograd.nn import MLP
assert not hasattr(micrograd, "BACKEND"), micrograd.__file__

np.random.seed(1337)
random.seed(1337)
X, y = make_moons(n_samples=100, noise=0.1)
y = y*2 - 1 # make y be -1 or 1
model = MLP(2, [16, 16, 1]) # 2-layer neural network

def loss(batch_size=None):
    Xb, yb = X, y
    inputs = [list(map(Value, xrow)) for xrow in Xb]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(yb, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores)]
    return total_loss, sum(accuracy) / len(accuracy)

def release(root):
    stack, seen = [root], set()
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
            if v._prev:
                v._backward = None

gc.disable()
history = []
for k in range(int(sys.argv[1])):
    total_loss, acc = loss()
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9*k/100
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    history.append([float(total_loss.data), float(acc)])
    release(total_loss)
    del total_loss
print(json.dumps(history))
'''

UPSTREAM_DEMO_STEPS = 100
_upstream_demo = {}   # 'proc', 'out', 'err' (file paths) once started


def _start_upstream_demo(config):
    if _upstream_demo:
        return
    factory = getattr(config, "_tmp_path_factory", None)
    make_dir = (lambda: factory.mktemp("upstream")) if factory is not None else None
    path = ensure_upstream(make_dir)
    if path is None:
        _upstream_demo["error"] = _upstream["error"]
        return
    workdir = tempfile.mkdtemp(prefix="micrograd-upstream-demo-")
    _upstream_demo["workdir"] = workdir
    script = os.path.join(workdir, "upstream_demo.py")
    with open(script, "w") as f:
        f.write(UPSTREAM_DEMO)
    out = open(os.path.join(workdir, "stdout"), "w")
    err = open(os.path.join(workdir, "stderr"), "w")
    _upstream_demo["proc"] = subprocess.Popen(
        [sys.executable, script, str(UPSTREAM_DEMO_STEPS)], env=upstream_env(path),
        stdout=out, stderr=err, cwd=workdir)
    _upstream_demo["files"] = (out, err)


def pytest_collection_finish(session):
    # Start upstream's demo now if a selected test needs it: it runs alongside the rest.
    if any("upstream_demo_history" in getattr(item, "fixturenames", ())
           for item in session.items):
        _start_upstream_demo(session.config)


def pytest_sessionfinish(session):
    proc = _upstream_demo.get("proc")
    if proc is not None and proc.poll() is None:
        proc.kill()         # the run we started, by its handle
        proc.wait()
    for f in _upstream_demo.get("files", ()):
        f.close()
    if "workdir" in _upstream_demo:
        shutil.rmtree(_upstream_demo["workdir"], ignore_errors=True)


@pytest.fixture(scope="session")
def upstream_demo_history(pytestconfig):
    """[[loss, accuracy], ...] of upstream's moons demo, 100 steps."""
    _start_upstream_demo(pytestconfig)
    if "error" in _upstream_demo:
        pytest.skip(_upstream_demo["error"])
    proc = _upstream_demo["proc"]
    proc.wait(timeout=900)
    out, err = _upstream_demo["files"]
    out.close()
    err.close()
    with open(err.name) as f:
        stderr = f.read()
    assert proc.returncode == 0, stderr
    with open(out.name) as f:
        history = json.loads(f.read())
    assert len(history) == UPSTREAM_DEMO_STEPS
    return history

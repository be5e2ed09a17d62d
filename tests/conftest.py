"""Shared fixtures: both cores, an nn module per core, upstream micrograd 0.1.0.

Every test that takes ``engine`` runs twice: against the compiled core
(``micrograd._engine``) and against its pure-Python twin (``micrograd._pure``). That is
the one way a test runs against both cores. Tests whose point is comparing the two cores
with each other take ``both_engines`` instead.

Upstream micrograd 0.1.0 has the same import name as this package, so it is only ever
imported in a subprocess whose ``PYTHONPATH`` is its folder. ``benchmarks/upstream.py``
finds or installs it (shared with the benchmarks); tests that need it skip with its note
when it is unavailable.

Upstream's moons demo takes ~30 s for 100 steps, so when a selected test asks for
``upstream_demo_history`` the run starts in the background right after collection and
the suite's other tests run meanwhile.
"""
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import micrograd
from micrograd import demo as _demo

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "tests"

# benchmarks/upstream.py: the project's one installer of upstream micrograd 0.1.0.
sys.path.insert(0, str(ROOT / "benchmarks"))
import upstream as upstream_installer  # noqa: E402

# tests/upstream/ holds upstream's own test file; it imports torch at module level and
# is run only in a subprocess by test_upstream.py, never collected by this session.
collect_ignore = ["upstream"]

ENGINES = ["cython", "python"]


def pytest_configure(config):
    config.addinivalue_line("markers", "memory: measures resident memory or limits the address "
                            "space; skipped in the sanitizer build, whose shadow memory and "
                            "quarantine are not the engine's")


def pytest_collection_modifyitems(config, items):
    try:
        from micrograd._engine import _SANITIZED
    except ImportError:
        return
    if _SANITIZED:
        skip = pytest.mark.skip(reason="sanitizer build: AddressSanitizer's shadow memory and "
                                "quarantine, not the engine, would be measured or limited")
        for item in items:
            if item.get_closest_marker("memory"):
                item.add_marker(skip)


# ---------------------------------------------------------------------------------
# The two cores
# ---------------------------------------------------------------------------------
def engine_name(module):
    """'cython' or 'python' for micrograd._engine / micrograd._pure."""
    return "cython" if module.__name__ == "micrograd._engine" else "python"


@pytest.fixture(params=ENGINES, ids=ENGINES)
def engine(request):
    """The core module (micrograd._engine or micrograd._pure): Value and Tape."""
    return _demo.engine_module(request.param)


EnginePair = collections.namedtuple("EnginePair", "compiled twin")


@pytest.fixture(scope="session")
def both_engines():
    """(compiled, twin) core modules, for the tests that compare the two cores."""
    return EnginePair(_demo.engine_module("cython"), _demo.engine_module("python"))


@pytest.fixture
def nn(engine):
    """A fresh copy of micrograd.nn whose Value is the engine's."""
    return _demo.nn_module(engine_name(engine))


def subprocess_env(**overrides):
    """os.environ for a child Python that imports the same micrograd as this session
    (from src/ or wherever it is installed), with MICROGRAD_PURE_PYTHON unset unless
    given. Values of None remove a variable."""
    env = dict(os.environ)
    env.pop("MICROGRAD_PURE_PYTHON", None)
    env["PYTHONPATH"] = str(Path(micrograd.__file__).resolve().parent.parent)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


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
# A family of random graphs whose Python control flow does not depend on the data
# (so a tape of one instance is valid for any inputs) and whose values stay bounded.
# ---------------------------------------------------------------------------------
def random_graph(inputs, seed, n_ops=40):
    """(root, pool): n_ops random operations over inputs, seeded."""
    rng = random.Random(seed)
    pool = list(inputs)
    for _ in range(n_ops):
        a, b = rng.choice(pool), rng.choice(pool)
        op = rng.randrange(16)
        if op == 0:
            n = a + b
        elif op == 1:
            n = a - b
        elif op == 2:
            n = a.tanh() * b
        elif op == 3:
            n = a.relu() + b * 0.5
        elif op == 4:
            n = a.sigmoid() * 2 - 1
        elif op == 5:
            n = a.tanh().exp()
        elif op == 6:
            n = (a * a + 1).log()
        elif op == 7:
            n = a / (b * b + 1)
        elif op == 8:
            n = (a * a + 0.5) ** 0.5
        elif op == 9:
            n = (a.sigmoid() + 0.5) ** b.tanh()
        elif op == 10:
            n = 2 ** a.tanh()
        elif op == 11:
            n = -a
        elif op == 12:
            n = 1.5 - a
        elif op == 13:
            n = 3 / (a.sigmoid() + 1)
        elif op == 14:
            n = a.tanh() ** 2 + b.tanh() ** 3
        else:
            n = (a - 0.25).relu() * b.tanh()
        pool.append(n)
    root = pool[-1] + pool[-2] * pool[-3].tanh() + sum(pool[len(inputs):]) * 0.01
    return root, pool


def random_inputs(rng, n=4):
    return [rng.uniform(-2, 2) for _ in range(n)]


# ---------------------------------------------------------------------------------
# Our own demo runs, cached for the session: the twin's 100 eager steps cost tens of
# seconds of CPU, and each run is compared both with upstream and with the tape.
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
_upstream = {}   # 'path' and 'note', once looked for


def ensure_upstream():
    """(folder or None, note), looked for (and installed if needed) once per session."""
    if not _upstream:
        _upstream["path"], _upstream["note"] = upstream_installer.ensure_upstream()
    return _upstream["path"], _upstream["note"]


def run_upstream(path, code, timeout=300):
    """Run code with upstream micrograd importable as `micrograd`; return its stdout."""
    try:
        return upstream_installer.run(path, code, timeout=timeout)
    except RuntimeError as exc:
        pytest.fail(f"upstream micrograd failed:\n{exc}")


@pytest.fixture(scope="session")
def upstream_path():
    path, note = ensure_upstream()
    if path is None:
        pytest.skip(note)
    return str(path)


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
_upstream_demo = {}   # 'proc', 'files', 'workdir' once started; 'error' if it cannot be


def _start_upstream_demo():
    if _upstream_demo:
        return
    path, note = ensure_upstream()
    if path is None:
        _upstream_demo["error"] = note
        return
    workdir = tempfile.mkdtemp(prefix="micrograd-upstream-demo-")
    _upstream_demo["workdir"] = workdir
    script = os.path.join(workdir, "upstream_demo.py")
    with open(script, "w") as f:
        f.write(UPSTREAM_DEMO)
    out = open(os.path.join(workdir, "stdout"), "w")
    err = open(os.path.join(workdir, "stderr"), "w")
    _upstream_demo["proc"] = subprocess.Popen(
        [sys.executable, script, str(UPSTREAM_DEMO_STEPS)],
        env=upstream_installer.env_for(path), stdout=out, stderr=err, cwd=workdir)
    _upstream_demo["files"] = (out, err)


def pytest_collection_finish(session):
    # Start upstream's demo now if a selected test needs it: it runs alongside the rest.
    if any("upstream_demo_history" in getattr(item, "fixturenames", ())
           for item in session.items):
        _start_upstream_demo()


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
def upstream_demo_history():
    """[[loss, accuracy], ...] of upstream's moons demo, 100 steps."""
    _start_upstream_demo()
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


def upstream_demo_steps(path, steps):
    """[[loss, accuracy], ...] of upstream's first steps of the moons demo (a short run
    in the foreground, for the fast suite)."""
    return json.loads(run_upstream(
        path, f"import sys\nsys.argv = ['demo', '{steps}']\n" + UPSTREAM_DEMO))

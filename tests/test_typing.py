"""Type checkers see the public API typed, through ``from micrograd.engine import Value``.

mypy --strict and pyright accept a typical script (the README's drop-in example, training
loops with MLP, the optimizers and a Tape) and report bad operands; pyright --verifytypes
finds every public symbol typed except the gaps the README names. One run of mypy and one of
pyright serve the script tests."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, subprocess_env

SRC = ROOT / "src"
README = ROOT / "README.md"

TYPICAL = '''
import random

from micrograd.engine import BACKEND, Tape, Value
from micrograd.nn import MLP, Layer, Neuron
from micrograd.optim import SGD, Adam, AdamW

# the README's drop-in example
a = Value(-4.0)
b = Value(2.0)
c = a + b
d = a * b + b**3
c += c + 1
c += 1 + c + (-a)
d += d * 2 + (b + a).relu()
d += 3 * d + (b - a).relu()
e = c - d
f = e**2
g = f / 2.0
g += 10.0 / f
print(f'{g.data:.4f}')  # 24.7041
g.backward()
print(f'{a.grad:.4f}')  # 138.8338
print(f'{b.grad:.4f}')  # 645.5773
backend: str = BACKEND

# the lecture's training loop, with an optimizer
random.seed(1337)
xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
ys = [1.0, -1.0, -1.0, 1.0]
model = MLP(3, [4, 4, 1])
opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
for k in range(20):
    ypred = [model(x) for x in xs]
    loss = sum(((yout - ygt)**2 for ygt, yout in zip(ys, ypred)), Value(0.0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(k, loss.data)

# the moons demo's loss, replayed from a Tape, and a hand-written update
inputs = [list(map(Value, row)) for row in xs]
scores = list(map(model, inputs))
losses = [(1 + -yi*si).relu() for yi, si in zip(ys, scores)]
reg = 1e-4 * sum((p*p for p in model.parameters()), Value(0))
total = sum(losses, Value(0)) * (1.0 / len(losses)) + reg
tape = Tape(total)
for k in range(3):
    replayed: float = tape.forward()
    model.zero_grad()
    tape.backward()
    for p in model.parameters():
        p.data -= 0.1 * p.grad
n: int = len(tape)
leaves: list[Value] = tape.leaves

adam = Adam([{"params": model.parameters()}], lr=1e-2, betas=(0.9, 0.99))
adam.load_state_dict(adam.state_dict())
adamw = AdamW(Neuron(3).parameters(), weight_decay=0.1)
closure_loss: Value = adamw.step(lambda: total)
first: Value = Layer(3, 2)([1.0, 2.0, 3.0])[0]

# the lecture's manual steps and labels
h = (2 ** (a * 3 + 1.5) - a / 4).relu().tanh().exp().log().sigmoid() / a - 1
h.label = "h"
h.grad = 1.0
h._backward()
prev: set[Value] = h._prev
op: str = h._op
x: float = h.data + h.grad
r: Value = 1 - a + 2 * a + 1 / a + a ** a + (-a)
print(repr(model), model.layers[0].neurons[0].w[0].label, first.data)
'''

# each line: the source, and the error mypy and pyright must report on it
BAD = [
    ('Value(1.0) + "x"', "operator", "reportOperatorIssue"),
    ('"x" * Value(1.0)', "operator", "reportOperatorIssue"),
    ("Value(1.0).label = 3", "assignment", "reportAttributeAccessIssue"),
    ('MLP(2, [4, 1])(["a", "b"])', "list-item", "reportArgumentType"),
    ('SGD(MLP(2, [1]).parameters(), lr="0.1")', "arg-type", "reportArgumentType"),
]
BAD_HEADER = ("from micrograd.engine import Value\nfrom micrograd.nn import MLP\n"
              "from micrograd.optim import SGD\n")
BAD_FIRST_LINE = BAD_HEADER.count("\n") + 1

# the public modules whose bodies mypy --strict checks too (viz subclasses graphviz, which
# ships no types; demo runs any engine, upstream's and torch's too)
STRICT_MODULES = ["__init__.py", "engine.py", "nn.py", "optim.py"]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    d = tmp_path_factory.mktemp("typing")
    (d / "typical.py").write_text(TYPICAL)
    (d / "bad.py").write_text(BAD_HEADER + "".join(src + "\n" for src, _, _ in BAD))
    return d


@pytest.fixture(scope="module")
def mypy_output(scripts):
    """mypy --strict's error lines over both scripts and the public modules' own source."""
    pytest.importorskip("mypy", reason="mypy is not installed")
    files = [str(SRC / "micrograd" / name) for name in STRICT_MODULES]
    # imported modules are analysed but not reported, as for an installed package
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent",
         "--cache-dir", str(scripts / ".mypy_cache"), "typical.py", "bad.py", *files],
        capture_output=True, text=True, cwd=scripts, timeout=600,
        env=subprocess_env(MYPYPATH=str(SRC)))
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if ": error:" in line]


def _pyright(*args, cwd):
    if importlib.util.find_spec("pyright") is None:
        pytest.skip("pyright is not installed (pip install 'pyright[nodejs]')")
    # pyright reads the search paths of this interpreter, where micrograd is the one this
    # session imports: --pythonpath says so, and PATH too, since --verifytypes ignores
    # --pythonpath (pyright 1.1.414) and runs the first `python` on PATH
    env = subprocess_env(PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    # cwd is its project root: without a config there, pyright takes the nearest pyproject.toml
    # above as the root and skips files under a hidden folder in it (nox's .nox/.../tmp)
    (cwd / "pyrightconfig.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "pyright", "--pythonpath", sys.executable,
                           "--outputjson", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright gave no JSON report:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def pyright_diagnostics(scripts):
    report = _pyright("typical.py", "bad.py", cwd=scripts)
    assert report["summary"]["filesAnalyzed"] == 2, report["summary"]
    return [d for d in report["generalDiagnostics"] if d["severity"] == "error"]


def test_mypy_strict_accepts_a_typical_script(mypy_output):
    assert [line for line in mypy_output if line.startswith("typical.py:")] == []


def test_mypy_strict_accepts_the_public_modules(mypy_output):
    assert [line for line in mypy_output if not line.startswith(("typical.py:", "bad.py:"))] == []


def test_mypy_reports_each_bad_line(mypy_output):
    got = {(int(m[1]), m[2]) for line in mypy_output
           if (m := re.match(r"bad\.py:(\d+): error: .*\[([\w-]+)\]$", line))}
    assert got == {(BAD_FIRST_LINE + i, code) for i, (_, code, _) in enumerate(BAD)}, mypy_output


def test_pyright_accepts_a_typical_script(pyright_diagnostics):
    assert [d for d in pyright_diagnostics if d["file"].endswith("typical.py")] == []


def test_pyright_reports_each_bad_line(pyright_diagnostics):
    got = {(d["range"]["start"]["line"] + 1, d.get("rule")) for d in pyright_diagnostics
           if d["file"].endswith("bad.py")}
    assert got == {(BAD_FIRST_LINE + i, rule) for i, (_, _, rule) in enumerate(BAD)}, pyright_diagnostics


def readme_typing_gaps():
    """The names the README's Typing section lists as pyright's remaining gaps."""
    text = README.read_text()
    section = text.split("## Typing", 1)[1].split("\n## ", 1)[0]
    block = section.split("<!-- typing-gaps -->", 2)[1]
    return set(re.findall(r"`(micrograd\.[\w.]+)`", block))


@pytest.mark.slow      # a third checker run, ~10 s
def test_pyright_verifytypes_finds_only_the_gaps_the_readme_names(tmp_path):
    report = _pyright("--verifytypes", "micrograd", "--ignoreexternal", cwd=tmp_path)
    symbols = report["typeCompleteness"]["symbols"]
    assert len(symbols) > 50, report["typeCompleteness"]   # it did find the package
    untyped = {s["name"] for s in symbols if not s["isTypeKnown"] or s["isTypeAmbiguous"]}
    assert untyped == readme_typing_gaps()

"""micrograd.draw_dot: upstream's trace_graph picture, walked without recursion; built
without graphviz's `dot` program, which only rendering needs."""
import os
import re
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("graphviz", reason="the graphviz Python package (the viz extra) is not installed")

import micrograd  # noqa: E402
from micrograd import Value  # noqa: E402
from micrograd import viz  # noqa: E402
from conftest import lecture_graph  # noqa: E402

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="graphviz's `dot` program is not on PATH (apt-get install graphviz)")


def lecture_root():
    """The root of Karpathy's lecture graph, L = (a*b + c) * f, after backward()."""
    L = lecture_graph(Value)[-1]
    L.backward()
    return L


def svg_texts(dot):
    svg = dot.pipe(format="svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    return [t.replace("&#45;", "-") for t in re.findall(r">([^<]*)</text>", svg)]


@needs_dot
def test_lecture_graph_renders_to_svg():
    dot = micrograd.draw_dot(lecture_root())
    texts = svg_texts(dot)
    for label in "abcedfL":
        assert label in texts
    # data and grad of every node, %.4f as upstream
    for data, grad in [(2, 6), (-3, -4), (10, -2), (-6, -2), (4, -2), (-2, 4), (-8, 1)]:
        assert "data %.4f" % data in texts and "grad %.4f" % grad in texts
    assert texts.count("*") == 2 and texts.count("+") == 1     # one op node per result
    assert len(dot.body) == 7 + 3 * 2 + 6                      # 7 values, 3 ops (+edge), 6 edges


@needs_dot
def test_rankdir_and_awkward_labels():
    x = Value(1.5, label='x|{y} <z> "q"')
    y = (x ** 2).tanh() / x - 1
    texts = svg_texts(viz.draw_dot(y, rankdir="TB"))
    assert 'x|{y} &lt;z&gt; &quot;q&quot;' in texts            # escaped, shown verbatim
    assert {"**2", "**-1", "tanh", "+", "*"} <= set(texts)


def test_deep_chain_builds_without_recursion():
    v = Value(1.0)
    for _ in range(5000):
        v = v + 1.0
    dot = viz.draw_dot(v)
    nodes, edges = viz.trace(v)
    assert len(nodes) == 10001 and len(edges) == 10000
    assert sum('shape=record' in line for line in dot.body) == 10001


def test_bad_rankdir():
    with pytest.raises(ValueError, match="rankdir must be 'LR' or 'TB'"):
        viz.draw_dot(Value(1.0), rankdir="RL")


def test_draw_dot_returns_a_graphviz_digraph():
    import graphviz
    dot = viz.draw_dot(lecture_root())
    assert isinstance(dot, graphviz.Digraph)
    assert isinstance(dot.copy(), viz.ValueGraph)
    assert "shape=record" in dot.source and "rankdir=LR" in dot.source


def path_without_dot():
    """A PATH on which this Python runs but graphviz's `dot` is not found."""
    path = os.path.dirname(sys.executable)
    if shutil.which("dot", path=path) is not None:
        pytest.skip(f"`dot` is in {path}, beside this Python")
    return path


WITHOUT_DOT = r"""
import shutil, sys
import graphviz
import micrograd
from micrograd import Value, viz
assert shutil.which("dot") is None

a, b = Value(2.0, label="a"), Value(-3.0, label="b")
L = a * b + 1.0
L.backward()
dot = micrograd.draw_dot(L)                  # built without `dot`
assert isinstance(dot, graphviz.Digraph)
print("built", len(dot.body), "data 2.0000" in dot.source)

attempts = {
    "pipe": lambda: dot.pipe(),
    "pipe_png": lambda: dot.pipe(format="png"),
    "render": lambda: dot.render(sys.argv[1]),
    "view": lambda: dot.view(sys.argv[1]),
    "notebook": lambda: dot._repr_mimebundle_(),
    "neato": lambda: dot.pipe(engine="neato"),
    "check_dot": lambda: viz.check_dot(),
}
for name, attempt in attempts.items():
    try:
        attempt()
    except graphviz.ExecutableNotFound as exc:
        print(name, type(exc).__name__, isinstance(exc, RuntimeError), "|", exc)
    else:
        print(name, "did not raise")
"""


def test_built_without_dot_and_rendering_says_what_to_install(tmp_path):
    env = dict(os.environ, PATH=path_without_dot())
    proc = subprocess.run([sys.executable, "-c", WITHOUT_DOT, str(tmp_path / "g")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "built 13 True"   # 5 values (1.0 too), 2 ops (node + edge), 4 edges
    results = dict(line.split(" ", 1) for line in lines[1:])
    assert set(results) == {"pipe", "pipe_png", "render", "view", "notebook", "neato",
                            "check_dot"}
    for name, result in results.items():
        kind, message = result.split(" | ")
        assert kind == "DotNotFound True", (name, result)
        program = "neato" if name == "neato" else "dot"
        assert f"graphviz's '{program}' program is not on PATH" in message
        for hint in ("apt-get install graphviz", "brew install graphviz",
                     "conda install graphviz"):
            assert hint in message, (name, message)


def test_missing_graphviz_package_names_the_extra():
    code = ("import sys; sys.modules['graphviz'] = None\n"
            "try:\n    from micrograd import draw_dot\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "pip install 'micrograd-compiled[viz]'" in out

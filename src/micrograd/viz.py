"""Draw a Value's graph with graphviz, as upstream's trace_graph.ipynb does.

``draw_dot(root)`` returns a ``graphviz.Digraph``: one record node per Value
(``label | data | grad``) and, for every Value made by an op, a small node with the
op's name, wired ``operand -> op -> result``. In a notebook the Digraph displays
itself; elsewhere use ``draw_dot(root).render('graph')`` or ``.pipe()``.

Building the Digraph needs only the graphviz Python package (the ``viz`` extra).
Rendering it (``render``, ``pipe``, ``view``, a notebook's display) also needs
graphviz's ``dot`` program on PATH; without it those raise ``DotNotFound``, which
names the program and how to install it.
"""
import shutil
from typing import Any, Union

from micrograd.engine import Value

try:
    from graphviz import Digraph, ExecutableNotFound, Source
except ImportError as _exc:
    raise ImportError("micrograd.draw_dot needs the graphviz Python package: "
                      "pip install 'micrograd-compiled[viz]'") from _exc

__all__ = ["draw_dot", "trace", "check_dot", "DotNotFound", "ValueGraph"]

_RECORD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\{}|<>\""})


INSTALL_HINT = ("install graphviz (the programs, not only the Python package): "
                "apt-get install graphviz / brew install graphviz / conda install graphviz")


class DotNotFound(ExecutableNotFound):
    """Rendering needs a graphviz program (``dot`` unless another engine is asked for)
    that is not on PATH. A ``graphviz.ExecutableNotFound``, hence a ``RuntimeError``."""

    def __init__(self, program: str = "dot") -> None:
        RuntimeError.__init__(self, f"graphviz's {program!r} program is not on PATH, and "
                              f"rendering the graph needs it: {INSTALL_HINT}")
        self.program = program


def check_dot(program: str = "dot") -> None:
    """Raise ``DotNotFound`` unless graphviz's ``program`` (which renders) is on PATH."""
    if shutil.which(program) is None:
        raise DotNotFound(program)


class ValueGraph(Digraph):
    """The ``graphviz.Digraph`` that ``draw_dot`` returns. It renders exactly as a Digraph
    does; if the graphviz program is missing, rendering raises ``DotNotFound``."""

    def pipe(self, *args: Any, **kwargs: Any) -> Union[bytes, str]:
        try:
            return super().pipe(*args, **kwargs)
        except ExecutableNotFound as exc:
            raise DotNotFound(kwargs.get("engine") or self.engine) from exc

    def render(self, *args: Any, **kwargs: Any) -> str:
        try:
            return super().render(*args, **kwargs)
        except ExecutableNotFound as exc:
            raise DotNotFound(kwargs.get("engine") or self.engine) from exc

    def unflatten(self, *args: Any, **kwargs: Any) -> Source:
        try:
            return super().unflatten(*args, **kwargs)
        except ExecutableNotFound as exc:
            raise DotNotFound("unflatten") from exc


def trace(root: Value) -> tuple[list[Value], list[tuple[Value, Value]]]:
    """All Values below root and the (operand, result) edges, walked without recursion."""
    nodes: list[Value] = []
    edges: list[tuple[Value, Value]] = []
    seen = {id(root)}
    stack = [root]
    while stack:
        v = stack.pop()
        nodes.append(v)
        for child in v._prev:
            edges.append((child, v))
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return nodes, edges


def draw_dot(root: Value, format: str = "svg", rankdir: str = "LR") -> ValueGraph:
    """A graphviz.Digraph (a ``ValueGraph``) of the graph below root: ``rankdir`` 'LR'
    (left to right) or 'TB'. Building it does not need graphviz's ``dot`` program;
    rendering it does (``DotNotFound`` otherwise)."""
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    nodes, edges = trace(root)
    dot = ValueGraph(format=format, graph_attr={"rankdir": rankdir})
    for n in nodes:
        uid = str(id(n))
        label = n.label.translate(_RECORD_SPECIAL)
        dot.node(name=uid, label="{ %s | data %.4f | grad %.4f }" % (label, n.data, n.grad),
                 shape="record")
        if n._op:
            # a separate node for the op that made this value, feeding into it
            dot.node(name=uid + n._op, label=n._op)
            dot.edge(uid + n._op, uid)
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    return dot

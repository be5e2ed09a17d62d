"""Draw a Value's graph with graphviz, as upstream's trace_graph.ipynb does.

``draw_dot(root)`` returns a ``graphviz.Digraph``: one record node per Value
(``label | data | grad``) and, for every Value made by an op, a small node with the
op's name, wired ``operand -> op -> result``. In a notebook the Digraph displays
itself; elsewhere use ``draw_dot(root).render('graph')`` or ``.pipe()``.

Needs the graphviz Python package (the ``viz`` extra) and graphviz's ``dot`` program
on PATH (``apt-get install graphviz`` / ``brew install graphviz``).
"""
import shutil

try:
    from graphviz import Digraph
except ImportError as exc:
    raise ImportError("micrograd.draw_dot needs the graphviz Python package: "
                      "pip install 'micrograd-compiled[viz]'") from exc

__all__ = ["draw_dot", "trace", "check_dot"]

_RECORD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\{}|<>\""})


def check_dot():
    """Raise RuntimeError unless graphviz's ``dot`` program, which renders, is on PATH."""
    if shutil.which("dot") is None:
        raise RuntimeError("the graphviz 'dot' program is not on PATH: "
                           "apt-get install graphviz / brew install graphviz")


def trace(root):
    """All Values below root and the (operand, result) edges, walked without recursion."""
    nodes, edges, seen = [], [], {id(root)}
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


def draw_dot(root, format="svg", rankdir="LR"):
    """A graphviz.Digraph of the graph below root: ``rankdir`` 'LR' (left to right) or 'TB'.

    Raises RuntimeError if the ``dot`` program is missing, since the Digraph could not
    be rendered.
    """
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    check_dot()
    nodes, edges = trace(root)
    dot = Digraph(format=format, graph_attr={"rankdir": rankdir})
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

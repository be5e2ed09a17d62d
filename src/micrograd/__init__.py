"""micrograd, compiled: Karpathy's micrograd with a Cython core and the same API."""
from micrograd.engine import BACKEND, Tape, Value

__version__ = "0.2.0"
__all__ = ["Value", "Tape", "BACKEND", "draw_dot", "__version__"]


def __getattr__(name):
    # graphviz is an optional extra: import it only when a picture is asked for
    if name == "draw_dot":
        from micrograd.viz import draw_dot
        return draw_dot
    raise AttributeError(f"module 'micrograd' has no attribute {name!r}")

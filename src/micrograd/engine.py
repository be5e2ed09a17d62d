# micrograd-compiled: this line marks the file as ours (micrograd/__init__.py checks it)
"""``from micrograd.engine import Value``: the compiled core, or its pure-Python twin.

``MICROGRAD_PURE_PYTHON=1`` selects the twin; so does a missing or broken compiled
module (with a warning). ``BACKEND`` says which one is active: ``'cython'`` or ``'python'``.
"""
import os
import warnings
from typing import TYPE_CHECKING

BACKEND: str

if TYPE_CHECKING:
    # Type checkers read the compiled core's stubs (micrograd/_engine.pyi): the twin has the
    # same API, and a checker cannot know which core an environment will pick at run time.
    from micrograd._engine import Tape, Value
elif os.environ.get("MICROGRAD_PURE_PYTHON", "") not in ("", "0"):
    from micrograd._pure import Tape, Value
    BACKEND = "python"
else:
    try:
        from micrograd._engine import Tape, Value
        BACKEND = "cython"
    except ImportError as exc:  # e.g. a source checkout that was never built
        warnings.warn(f"micrograd: the compiled core could not be imported ({exc}); "
                      "using the pure-Python twin, which is much slower (reinstall "
                      "with a C compiler available for the compiled core)",
                      RuntimeWarning, stacklevel=2)
        from micrograd._pure import Tape, Value
        BACKEND = "python"

__all__ = ["Value", "Tape", "BACKEND"]

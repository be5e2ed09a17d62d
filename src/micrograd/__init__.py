"""micrograd, compiled: Karpathy's micrograd with a Cython core and the same API."""


class MixedInstallError(ImportError):
    """This folder holds files of both micrograd-compiled and upstream micrograd (both
    install ``micrograd/``), or misses some of ours: reinstall the one you want."""


def _check_folder() -> None:
    """Raise MixedInstallError unless engine.py and nn.py beside this file are ours and our
    other modules are there. Costs one listdir and two short reads."""
    import os
    from importlib.machinery import SourceFileLoader
    if not isinstance(getattr(__spec__, "loader", None), SourceFileLoader):
        return   # a zip, frozen or bytecode-only install: no source files to look at
    here = os.path.dirname(__file__)
    marker = b"# micrograd-compiled: this line marks the file as ours"
    present = set(os.listdir(here))
    problems = [f"{name} is missing" for name in
                ("engine.py", "nn.py", "_pure", "viz.py", "demo.py", "__main__.py")
                if name not in present]
    for name in ("engine.py", "nn.py"):
        if name in present:
            fd = os.open(os.path.join(here, name), os.O_RDONLY)
            try:
                first = os.read(fd, len(marker))
            finally:
                os.close(fd)
            if first != marker:
                problems.append(f"{name} is not micrograd-compiled's")
    if problems:
        raise MixedInstallError(
            f"{here} mixes micrograd-compiled with upstream micrograd, which installs the "
            f"same micrograd/ folder, or lost files to an uninstall ({'; '.join(problems)}). "
            "Reinstall the one you want: `pip uninstall -y micrograd micrograd-compiled` "
            "then `pip install micrograd-compiled` (or `pip install micrograd` for upstream's)",
            name=__name__, path=__file__)


_check_folder()
del _check_folder

from typing import TYPE_CHECKING  # noqa: E402

from micrograd.engine import BACKEND, Tape, Value  # noqa: E402

__version__ = "0.2.0"
__all__ = ["Value", "Tape", "BACKEND", "draw_dot", "MixedInstallError", "__version__"]


if TYPE_CHECKING:   # checkers see draw_dot itself; at run time it is imported on first use
    from micrograd.viz import draw_dot
else:
    def __getattr__(name):
        # graphviz is an optional extra: import it only when a picture is asked for
        if name == "draw_dot":
            from micrograd.viz import draw_dot
            return draw_dot
        raise AttributeError(f"module 'micrograd' has no attribute {name!r}")

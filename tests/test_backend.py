"""Which core `micrograd.engine` serves: the compiled one by default, the twin on request
or when the extension is missing."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import micrograd
import micrograd.engine
from micrograd import _engine, _pure

from conftest import subprocess_env


def test_compiled_backend_is_really_compiled():
    # Only an explicit request may select the twin: a compiled core that fails to import
    # must fail here rather than be served silently as the twin.
    if os.environ.get("MICROGRAD_PURE_PYTHON", "") not in ("", "0"):
        pytest.skip("MICROGRAD_PURE_PYTHON selects the twin in this run")
    Value = micrograd.engine.Value
    assert Value is _engine.Value
    assert micrograd.engine.Tape is _engine.Tape
    assert micrograd.Value is _engine.Value
    module_file = sys.modules[Value.__module__].__file__
    assert module_file.endswith((".so", ".pyd")), module_file
    assert inspect.getfile(Value) == module_file
    assert not inspect.getfile(Value).endswith(".py")
    assert type(Value).__name__ == "type"
    assert not hasattr(Value(1.0), "__dict__")
    assert not inspect.isfunction(Value.__init__)
    assert not inspect.isfunction(Value.backward)
    with pytest.raises((TypeError, OSError)):
        inspect.getsource(Value)       # no Python source behind it


def test_pure_twin_is_a_python_class():
    Value = _pure.Value
    assert inspect.isfunction(Value.backward)
    # its methods are Python source inside micrograd._pure (a module or a package)
    source = Path(inspect.getsourcefile(Value.backward))
    assert source.suffix == ".py", source
    assert source.stem == "_pure" or source.parent.name == "_pure", source
    assert "def backward" in inspect.getsource(Value.backward)


# Which classes a fresh interpreter's `micrograd.engine` serves.
WHICH = ("import micrograd, micrograd.engine as e\n"
         "from micrograd import _pure\n"
         "print(e.BACKEND, micrograd.BACKEND, e.Value is _pure.Value, e.Tape is _pure.Tape)\n")


@pytest.mark.parametrize("setting, backend", [("1", "python"), ("0", "cython"), ("", "cython")])
def test_environment_selects_backend(setting, backend):
    proc = subprocess.run([sys.executable, "-c", WHICH], capture_output=True, text=True,
                          timeout=60, env=subprocess_env(MICROGRAD_PURE_PYTHON=setting))
    assert proc.returncode == 0, proc.stderr
    twin = str(backend == "python")
    assert proc.stdout.split() == [backend, backend, twin, twin]


def test_missing_compiled_core_falls_back_to_the_twin_with_a_warning():
    code = ("import sys, warnings\n"
            "sys.modules['micrograd._engine'] = None   # as if the extension were not built\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import micrograd.engine\n"
            "print(any(issubclass(w.category, RuntimeWarning) for w in caught))\n" + WHICH)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "python", "python", "True", "True"]


def test_default_tape_is_the_active_engines():
    expected = _engine if micrograd.engine.BACKEND == "cython" else _pure
    assert micrograd.engine.Tape is expected.Tape
    assert micrograd.engine.Value is expected.Value

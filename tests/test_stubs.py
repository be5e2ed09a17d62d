"""src/micrograd/_engine.pyi matches the compiled module."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

_engine = pytest.importorskip("micrograd._engine", reason="the compiled core is not built")

STUB = Path(__file__).resolve().parents[1] / "src" / "micrograd" / "_engine.pyi"
UPSTREAM_PRIVATE = {"_prev", "_op", "_backward"}   # upstream's underscore API, kept


def stub_classes():
    """{class name: names its body defines (methods, properties, annotated attributes)}."""
    tree = ast.parse(STUB.read_text(), filename=str(STUB))
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
            classes[node.name] = names
    return classes


def api(names):
    """Public names plus upstream's underscore API; dunders left out."""
    return {n for n in names if not n.startswith("_") or n in UPSTREAM_PRIVATE}


def test_stub_classes_are_the_modules_public_classes():
    public = {n for n in dir(_engine) if not n.startswith("_") and isinstance(getattr(_engine, n), type)}
    assert set(stub_classes()) == public == {"Value", "Tape"}


@pytest.mark.parametrize("cls", ["Value", "Tape"])
def test_stub_names_match_the_compiled_class(cls):
    stub = stub_classes()[cls]
    klass = getattr(_engine, cls)
    # attribute names users set on plain Values (other tests do) live on the class as
    # _Attribute descriptors: not part of the API
    runtime = {n for n in dir(klass) if not isinstance(getattr(klass, n, None), _engine._Attribute)}
    assert api(stub) == api(runtime)
    # every dunder the stub declares exists at runtime (the operators, __len__, ...)
    assert {n for n in stub if n.startswith("__")} <= runtime


def test_stub_declares_the_operators():
    ops = {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
           "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__init__", "__reduce__"}
    assert ops <= stub_classes()["Value"]
    assert {"__init__", "__len__"} <= stub_classes()["Tape"]


def test_py_typed_marker_ships():
    assert (STUB.parent / "py.typed").is_file()


def test_stubtest(tmp_path):
    pytest.importorskip("mypy.stubtest", reason="mypy is not installed")
    allow = tmp_path / "allowlist.txt"
    # Cython's module-level artifacts, not API
    allow.write_text("".join(f"micrograd._engine.{name}\n" for name in (
        "__reduce_cython__", "__setstate_cython__", "__test__", "_rebuild", "_OP_NAMES")))
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "micrograd._engine",
                           "--allowlist", str(allow), "--ignore-unused-allowlist"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

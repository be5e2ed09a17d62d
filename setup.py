"""Build the compiled core: src/_engine.pyx -> micrograd._engine (see pyproject.toml).

Without a working C compiler the build warns and installs the package without
micrograd._engine: micrograd.engine then runs the pure-Python twin (and warns at import).
MICROGRAD_REQUIRE_COMPILED=1 makes a failed compile fail the install instead (CI and the
wheel builds set it).
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

# Optimise even where CFLAGS say otherwise; MSVC spells it differently. No contraction
# of a*b + c into one fused multiply-add (aarch64 gcc does it by default): Python rounds
# the product first, and the tape's FMA instruction must give the same floats.
extra = ["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]
annotate = os.environ.get("MICROGRAD_ANNOTATE") == "1"   # writes src/_engine.html (cython -a)
# The sanitizer build (README, "Sanitizer build"): AddressSanitizer in the extension; the
# allocator then poisons free node slots (core/alloc.pxi). -O1 keeps its reports readable.
link = []
if os.environ.get("MICROGRAD_SANITIZE") == "1":
    if sys.platform == "win32":
        sys.exit("MICROGRAD_SANITIZE=1: the sanitizer build needs gcc or clang")
    extra = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", "-ffp-contract=off"]
    link = ["-fsanitize=address"]

NO_COMPILER = """
********************************************************************************
WARNING: micrograd-compiled could not compile its C core ({error}).
Installing without it: `from micrograd.engine import Value` will use the
pure-Python twin (same API and results, much slower) and warn at import.
For the compiled core, install a C compiler (gcc or clang; on Windows, the
Microsoft C++ Build Tools), then reinstall without pip's cached wheel:
    pip install --force-reinstall --no-cache-dir --no-binary micrograd-compiled micrograd-compiled
Set MICROGRAD_REQUIRE_COMPILED=1 to make this failure stop the install.
********************************************************************************
"""


class BuildExtOrTwin(build_ext):
    """build_ext that falls back to the pure-Python twin when no C compiler works."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except (CCompilerError, ExecError, PlatformError, OSError) as exc:
            if os.environ.get("MICROGRAD_REQUIRE_COMPILED", "") not in ("", "0"):
                raise
            print(NO_COMPILER.format(error=f"{type(exc).__name__}: {exc}"), file=sys.stderr)


setup(
    ext_modules=cythonize(
        [Extension("micrograd._engine", ["src/_engine.pyx"], extra_compile_args=extra,
                   extra_link_args=link)],
        language_level=3,
        annotate=annotate,
    ),
    cmdclass={"build_ext": BuildExtOrTwin},
)

"""Build the compiled core: src/_engine.pyx -> micrograd._engine (see pyproject.toml)."""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

# Optimise even where CFLAGS say otherwise; MSVC spells it differently. No contraction
# of a*b + c into one fused multiply-add (aarch64 gcc does it by default): Python rounds
# the product first, and the tape's FMA instruction must give the same floats.
extra = ["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]
annotate = os.environ.get("MICROGRAD_ANNOTATE") == "1"   # writes src/_engine.html (cython -a)

setup(
    ext_modules=cythonize(
        [Extension("micrograd._engine", ["src/_engine.pyx"], extra_compile_args=extra)],
        language_level=3,
        annotate=annotate,
    ),
)

"""Build the compiled core: src/_engine.pyx -> micrograd._engine (see pyproject.toml)."""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

# Optimise even where CFLAGS say otherwise; MSVC spells it differently.
extra = ["/O2"] if sys.platform == "win32" else ["-O3"]
annotate = os.environ.get("MICROGRAD_ANNOTATE") == "1"   # writes src/_engine.html (cython -a)

setup(
    ext_modules=cythonize(
        [Extension("micrograd._engine", ["src/_engine.pyx"], extra_compile_args=extra)],
        language_level=3,
        annotate=annotate,
    ),
)

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
# The sanitizer build (README, "Sanitizer build"): AddressSanitizer in the extension; the
# allocator then poisons free node slots (core/alloc.pxi). -O1 keeps its reports readable.
link = []
if os.environ.get("MICROGRAD_SANITIZE") == "1":
    if sys.platform == "win32":
        sys.exit("MICROGRAD_SANITIZE=1: the sanitizer build needs gcc or clang")
    extra = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address", "-ffp-contract=off"]
    link = ["-fsanitize=address"]

setup(
    ext_modules=cythonize(
        [Extension("micrograd._engine", ["src/_engine.pyx"], extra_compile_args=extra,
                   extra_link_args=link)],
        language_level=3,
        annotate=annotate,
    ),
)

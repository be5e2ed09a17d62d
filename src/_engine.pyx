# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The compiled core of micrograd: a scalar Value node, its op rules, the walk and the Tape.

Where upstream micrograd gives every node a Python ``set`` of children and a
``_backward`` closure, here a node is a 56-byte C struct: two child pointers (the
second shares its 8 bytes with a constant exponent) and an op code. The op code
selects both the forward rule and the local gradients, written side by side.

This file is the module's entry: the declarations are in ``micrograd/_engine.pxd``, the code in
the parts included below, each read next to its twin in ``micrograd/_pure/``:

    core/rules.pxi   _pure/rules.py   Python's float semantics; each op's forward rule
                                      and local gradients, side by side
    core/alloc.pxi   (none)           the node allocator: CPython's serves the twin
    core/extras.pxi  _pure/extras.py  what lives beside a node: label, hand-built op,
                                      an assigned _backward, attributes
    core/node.pxi    _pure/node.py    the Value class; building nodes; pickling
    core/walk.pxi    _pure/walk.py    the topological walk and eager backward
    core/recall.pxi  (none)           walks remembered: backward() on a graph rebuilt in
                                      the slots of one it walked checks it, not walks it
    core/replay.pxi  (none)           the Tape's inner loops: a sum's forward, the carry
                                      and the zero-run skip in backward, prefetching;
                                      its arrays' allocation
    core/blocks.pxi  (none)           the Tape's dense-layer blocks: a layer's neurons
                                      replayed side by side
    core/packs.pxi   (none)           a layer's weights laid out for SIMD, once per
                                      forward, for every sample's block
    core/tape.pxi    _pure/tape.py    Tape: record once, replay over dense arrays
    core/optim.pxi   _pure/optim.py   the optimizers' per-parameter loops (micrograd.optim)
"""
cimport cython
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_acquire_lock,
    PyThread_release_lock, PyThread_get_thread_ident, WAIT_LOCK, NOWAIT_LOCK)
from libc.math cimport pow, exp, log, tanh, floor, isfinite, isinf, signbit
from libc.stdlib cimport calloc, realloc, free
from libc.string cimport memcpy, memset
from libc.stdint cimport uint64_t
import numbers as _numbers

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(PyObject* o)
    void PyType_Modified(type t)

include "core/rules.pxi"
include "core/alloc.pxi"
include "core/extras.pxi"
include "core/node.pxi"
include "core/walk.pxi"
include "core/recall.pxi"
include "core/replay.pxi"
include "core/blocks.pxi"
include "core/packs.pxi"
include "core/tape.pxi"
include "core/optim.pxi"

_install_slots(Value)
_SANITIZED = SANITIZED     # built with MICROGRAD_SANITIZE=1: free node slots are poisoned

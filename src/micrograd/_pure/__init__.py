"""The pure-Python twin of the compiled core, ``micrograd._engine``.

Same op codes, same rules in the same order, same iterative walk, same Tape phases,
same names: read each file next to its counterpart in the core.

    declarations.py   micrograd/_engine.pxd   op codes, flag bits, the instruction
    rules.py          src/core/rules.pxi      each op's forward rule and local gradients
    (none)            src/core/alloc.pxi      the node allocator: CPython's serves here
    node.py           src/core/node.pxi       the Value class; building nodes; pickling
    walk.py           src/core/walk.pxi       the topological walk and eager backward
    (none)            src/core/recall.pxi     walks remembered: here every backward() walks
                                              (the same order, so the same grads)
    (inline in tape)  src/core/replay.pxi     the core Tape's inner loops: a sum's forward,
                                              the carry and the zero-run skip in backward
    tape.py           src/core/tape.pxi       Tape: record once, replay over lists
    optim.py          src/core/optim.pxi      the optimizers' per-parameter loops (micrograd.optim)

Selected by ``MICROGRAD_PURE_PYTHON=1``, or automatically when the compiled module
cannot be imported.
"""
from micrograd._pure.node import Value, _rebuild, _rebuild_below
from micrograd._pure.tape import Tape

# Pickles name the package, not the file a class sits in (as the core's name
# micrograd._engine): they stay loadable however the twin's files are arranged.
Value.__module__ = Tape.__module__ = _rebuild.__module__ = _rebuild_below.__module__ = __name__

__all__ = ["Value", "Tape"]

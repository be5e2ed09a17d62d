"""The walk: every node below a root in topological order, then eager backward over it.

The twin of ``src/core/walk.pxi``. An explicit stack and per-node marks replace
upstream's recursive build_topo and its visited set. The core's growable C arrays
(``_Buf``, ``_grow``) are lists here, and its flag helpers plain expressions.
"""
import threading

from micrograd._pure.declarations import (
    LEAF, CUSTOM, VISITED, DONE, USER_RULE, WALK_CHECK, WALK_LEAVES, FIELD_DATA,
    EXTRA_CHILDREN)
from micrograd._pure.rules import _partials, _can_raise, _check_partials

Value = None         # the node class; node.py sets it (it imports this module first)

_walking = False     # a walk's marks (and a recording Tape's _slot numbers) are in use
_walker = 0          # the thread walking, while _walking
_walk_lock = threading.Lock()   # held while _walking


def _begin_walk():
    """Claim the nodes' marks for one walk (released with _end_walk).

    Python code runs in the middle of a walk: a _backward the user assigned, and the
    garbage collector's callbacks and finalizers (here at any bytecode). A backward() or
    Tape() from there would clobber the outer walk's marks, so it raises instead, as the
    compiled core does. Another thread's walk waits for this one (here any bytecode may
    switch threads)."""
    global _walking, _walker
    if not _walk_lock.acquire(False):
        if _walker == threading.get_ident():
            raise RuntimeError("backward() or Tape() called while another one is walking a graph "
                               "(from a _backward, a finalizer or a gc callback?)")
        _walk_lock.acquire()            # another thread's walk: let it finish
    _walking = True
    _walker = threading.get_ident()


def _end_walk():
    global _walking, _walker
    _walking = False
    _walker = 0
    _walk_lock.release()


def _set_field(v, field, x):
    if field == FIELD_DATA:
        v.data = x
    else:
        v.grad = x


def _python_rule(v):
    """Does backward reach v's _backward through Python (a function the user assigned,
    or a subclass, which may override it)?"""
    return v._flags & USER_RULE or type(v) is not Value


def _wanted(child, mode):
    """Should the walk enter child? Not twice, and not a leaf unless leaves are wanted
    (or it may have a _backward of its own)."""
    return not child._flags & VISITED and (
        mode & WALK_LEAVES or child._code != LEAF or _python_rule(child))


def _record(root, order, mode):
    """Fill order with every node below root, each after all its operands (post-order
    DFS); return how many.

    mode & WALK_CHECK: also raise (before anything is changed) what backward would raise.
    Without mode & WALK_LEAVES, leaves below root are neither recorded nor marked: they
    have no rule for backward to apply (a wide sum's leaves would double the walk).
    On success the recorded nodes stay marked: the caller clears the marks with
    _accumulate or _unmark. On error they are cleared here.
    """
    stack = [root]
    emitting = None
    try:
        while stack:
            p = stack[-1]
            if p._flags & VISITED:
                # operands done (or a stale duplicate entry): emit p once
                stack.pop()
                if not p._flags & DONE:
                    p._flags |= DONE
                    emitting = p        # if the append runs out of memory, p is on no list
                    order.append(p)
                    emitting = None
                    if (mode & WALK_CHECK and _can_raise(p._code)
                            and not p._flags & USER_RULE):
                        _check_partials(p._code, p._a.data, _y(p))
                continue
            while True:
                # first visit of p: push its operands (p stays below them on the stack),
                # then go straight on into the first operand, which is on top
                p._flags |= VISITED
                if p._code == CUSTOM:
                    for c in p._extra[EXTRA_CHILDREN]:
                        if _wanted(c, mode):
                            stack.append(c)
                    break
                child = p._b
                if child is not None and _wanted(child, mode):
                    stack.append(child)
                child = p._a
                if child is None or not _wanted(child, mode):
                    break
                stack.append(child)
                p = child
    except BaseException:
        _unmark(order)
        _unmark(stack)
        if emitting is not None:
            _unmark([emitting])
        raise
    return len(order)


def _unmark(nodes):
    for p in nodes:
        p._flags &= ~(VISITED | DONE)


def _y(v):
    """The y of v's rule: second operand's data, POWC's exponent, or 0.0 (unary)."""
    return v._b.data if v._b is not None else v._c


def _chain(out):
    """Apply out's local rule: add out.grad * d(out)/d(operand) to each operand's grad."""
    if out._a is None:          # LEAF or CUSTOM: no rule
        return
    dx, dy = _partials(out._code, out._a.data, _y(out), out.data)
    out._a.grad += dx * out.grad
    if out._b is not None:
        out._b.grad += dy * out.grad


def _accumulate(nodes):
    """Apply every local rule, root first (reversed topological order); clear the marks.

    A _backward written in Python runs here too, in the same order; if it raises, the
    remaining nodes' marks are cleared and the error propagates (as upstream's would)."""
    for i in range(len(nodes) - 1, -1, -1):
        p = nodes[i]
        p._flags &= ~(VISITED | DONE)
        if _python_rule(p):
            try:
                p._backward()
            except BaseException:
                _unmark(nodes[:i])
                raise
        else:
            _chain(p)



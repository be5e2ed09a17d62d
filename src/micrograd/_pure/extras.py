"""What lives beside the node: the twin of ``src/core/extras.pxi``.

Its label, a hand-built node's _op and _children, and a _backward function assigned by
the user sit in the node's ``_extra`` slot, a list indexed by EXTRA_* (the core keeps
them in a side table keyed by id(node), so that its node stays 56 bytes).

Two parts of the core's file have no counterpart: attributes the class does not define
go to the twin Value's ``__dict__``, as on any Python object; and the twin's nodes are
tracked by Python's collector, which frees the cycle a _backward closure makes
(out -> fn -> cell -> out) without help.
"""
from micrograd._pure.declarations import HAS_EXTRA, USER_RULE, EXTRA_RULE, N_EXTRAS


def _get_extra(v, field):
    if not v._flags & HAS_EXTRA:
        return None
    return v._extra[field]


def _set_extra(v, field, item):
    if not v._flags & HAS_EXTRA:
        v._extra = [None] * N_EXTRAS
        v._flags |= HAS_EXTRA
    v._extra[field] = item


def _set_rule(v, fn):
    _set_extra(v, EXTRA_RULE, fn)
    v._flags |= USER_RULE


def _clear_rule(v):
    if v._flags & USER_RULE:
        v._flags &= ~USER_RULE
        v._extra[EXTRA_RULE] = None

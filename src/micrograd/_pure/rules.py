"""The rule book, and the float semantics it keeps: the twin of ``src/core/rules.pxi``."""
import math

from micrograd._pure.declarations import ADD, MUL, POWC, POW, RELU, TANH, EXP, LOG

# ---------------------------------------------------------------------------------
# Python's float semantics for the three functions that can fail.
# ---------------------------------------------------------------------------------
def _pow(x, y):
    if x == 0.0 and y < 0.0 and math.isfinite(y):
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if x < 0.0 and math.isfinite(x) and math.isfinite(y) and y != math.floor(y):
        # float ** would return a complex number here; a scalar engine has no use for one
        raise ValueError("negative number cannot be raised to a fractional power")
    return x ** y       # raises OverflowError itself


def _exp(x):
    return math.exp(x)  # raises OverflowError itself


def _log(x):
    if x <= 0.0:
        raise ValueError("math domain error")
    return math.log(x)


def _sigmoid(x):
    # Two forms so that exp() never overflows: e**-x for x >= 0, e**x otherwise.
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------
# The rule book: each op's forward rule and its local gradients, side by side.
# Both work on plain floats, so eager backward() (on Value fields) and Tape replay
# (on dense lists) share them. x is the first operand's data; y is the second
# operand's data, or POWC's constant exponent, or 0.0 for unary ops.
# ---------------------------------------------------------------------------------
def _forward(op, x, y):
    """out.data."""
    if op == ADD:
        return x + y
    elif op == MUL:
        return x * y
    elif op == POWC or op == POW:
        return _pow(x, y)
    elif op == RELU:
        return 0.0 if x < 0.0 else x
    elif op == TANH:
        return math.tanh(x)
    elif op == EXP:
        return _exp(x)
    elif op == LOG:
        return _log(x)
    else:                               # SIGMOID (LEAF and CUSTOM nodes are never computed)
        return _sigmoid(x)


def _partials(op, x, y, out):
    """(d(out)/dx, d(out)/dy): what the chain rule multiplies out.grad by.

    Never raises: the inputs where Python would (0 ** negative, 1/0) are rejected
    first by _check_partials, so that a failing backward changes no grad.
    """
    dy = 0.0
    if op == ADD:
        dx = 1.0
        dy = 1.0
    elif op == MUL:
        dx = y
        dy = x
    elif op == POWC:                    # y is a constant: no gradient for it
        dx = y * x ** (y - 1.0)
    elif op == POW:
        dx = y * x ** (y - 1.0)
        if x != 0.0:                    # 0 ** y is flat in y (for y > 0)
            dy = out * math.log(x)
    elif op == RELU:
        dx = float(out > 0.0)
    elif op == TANH:
        dx = 1.0 - out * out
    elif op == EXP:
        dx = out
    elif op == LOG:
        dx = 1.0 / x
    else:                               # SIGMOID (LEAF and CUSTOM nodes have no rule:
        dx = out * (1.0 - out)          # the walk and the Tape never apply one)
    return dx, dy


# FMA, the tape's one fused op: out = acc + a*b, with partials 1 for acc, b for a and
# a for b. A Tape writes ADD(acc, MUL(a, b)) this way when the MUL node feeds only that
# ADD and comes right before it: one instruction instead of two, and the same floats,
# in the same order, as the two ops. Its forward and backward are written in Tape's loops.


def _can_raise(op):
    """Ops whose partials can raise (see _check_partials)."""
    return op == POWC or op == POW or op == LOG


def _check_partials(op, x, y):
    """Raise what Python would raise computing op's partials at (x, y)."""
    if op == POWC or op == POW:
        _pow(x, y - 1.0)
        if op == POW and x < 0.0:
            raise ValueError("math domain error: the exponent's gradient needs "
                             "log(base), and the base %r is negative" % x)
    elif op == LOG and x == 0.0:
        raise ZeroDivisionError("float division by zero")
    return 0


# The rule book, and the float semantics it keeps. Twin: micrograd/_pure/rules.py.
#
# ---------------------------------------------------------------------------------
# Python's float semantics for the three functions that can fail. CPython's float
# ``**`` and ``math`` raise on these inputs; the C library would silently give inf/nan.
# ---------------------------------------------------------------------------------
cdef double _pow(double x, double y) except? -1.0:
    if x == 0.0 and y < 0.0 and isfinite(y):
        raise ZeroDivisionError("0.0 cannot be raised to a negative power")
    if x < 0.0 and isfinite(x) and isfinite(y) and y != floor(y):
        # float ** would return a complex number here; a scalar engine has no use for one
        raise ValueError("negative number cannot be raised to a fractional power")
    cdef double r = pow(x, y)
    if isinf(r) and isfinite(x) and isfinite(y):
        raise OverflowError("(34, 'Numerical result out of range')")
    return r


cdef double _exp(double x) except? -1.0:
    cdef double r = exp(x)
    if isinf(r) and isfinite(x):
        raise OverflowError("math range error")
    return r


cdef double _log(double x) except? -1.0:
    if x <= 0.0:
        raise ValueError("math domain error")
    return log(x)


cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    /* maxsd 0, x gives (0 > x) ? 0 : x, and its second operand, x, when they compare
       equal (-0.0) or unordered (nan): the relu in one instruction, with no branch. */
    static inline double micrograd_relu(double x) {
        return _mm_cvtsd_f64(_mm_max_sd(_mm_setzero_pd(), _mm_set_sd(x)));
    }
    #else
    #include <stdint.h>
    #include <string.h>
    /* x < 0 makes an all-zeros mask, which clears x to +0.0; else all ones, which keeps it */
    static inline double micrograd_relu(double x) {
        uint64_t bits;
        memcpy(&bits, &x, sizeof bits);
        bits &= (uint64_t)(x < 0.0) - 1;
        memcpy(&x, &bits, sizeof bits);
        return x;
    }
    #endif
    """
    # ``0.0 if x < 0.0 else x`` (nan and -0.0 pass through), without a branch: in training
    # a relu's sign is a coin toss, and gcc's branch would be mispredicted half the time
    double _relu "micrograd_relu"(double x) noexcept nogil


cdef inline double _sigmoid(double x) noexcept:
    # Two forms so that exp() never overflows: e**-x for x >= 0, e**x otherwise.
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + exp(-x))
    e = exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------
# The rule book: each op's forward rule and its local gradients, side by side.
# Both work on plain doubles, so eager backward() (on Value fields) and Tape replay
# (on dense arrays) share them. x is the first operand's data; y is the second
# operand's data, or POWC's constant exponent, or 0.0 for unary ops.
# ---------------------------------------------------------------------------------
cdef inline double _forward(int op, double x, double y) except? -1.0:
    """out.data."""
    if op == ADD:
        return x + y
    elif op == MUL:
        return x * y
    elif op == POWC or op == POW:
        return _pow(x, y)
    elif op == RELU:
        return _relu(x)
    elif op == TANH:
        return tanh(x)
    elif op == EXP:
        return _exp(x)
    elif op == LOG:
        return _log(x)
    else:                               # SIGMOID (LEAF and CUSTOM nodes are never computed)
        return _sigmoid(x)


cdef inline void _partials(int op, double x, double y, double out,
                           double* dx, double* dy) noexcept:
    """d(out)/dx and d(out)/dy: what the chain rule multiplies out.grad by.

    Never raises: the inputs where Python would (0 ** negative, 1/0) are rejected
    first by _check_partials, so that a failing backward changes no grad.
    """
    dy[0] = 0.0
    if op == ADD:
        dx[0] = 1.0
        dy[0] = 1.0
    elif op == MUL:
        dx[0] = y
        dy[0] = x
    elif op == POWC:                    # y is a constant: no gradient for it
        dx[0] = y * pow(x, y - 1.0)
    elif op == POW:
        dx[0] = y * pow(x, y - 1.0)
        if x != 0.0:                    # 0 ** y is flat in y (for y > 0)
            dy[0] = out * log(x)
    elif op == RELU:
        dx[0] = out > 0.0
    elif op == TANH:
        dx[0] = 1.0 - out * out
    elif op == EXP:
        dx[0] = out
    elif op == LOG:
        dx[0] = 1.0 / x
    else:                               # SIGMOID (LEAF and CUSTOM nodes have no rule:
        dx[0] = out * (1.0 - out)       # the walk and the Tape never apply one)


# FMA, the tape's one fused op: out = acc + a*b, with partials 1 for acc, b for a and
# a for b. A Tape writes ADD(acc, MUL(a, b)) this way when the MUL node feeds only that
# ADD and comes right before it: one instruction instead of two, and the same floats,
# in the same order, as the two ops (the build turns off FMA contraction, so a*b is
# rounded before the add). Its forward and backward are written in Tape's loops.


cdef inline bint _can_raise(int op) noexcept:
    """Ops whose partials can raise (see _check_partials)."""
    return op == POWC or op == POW or op == LOG


cdef int _check_partials(int op, double x, double y) except -1:
    """Raise what Python would raise computing op's partials at (x, y)."""
    if op == POWC or op == POW:
        _pow(x, y - 1.0)
        if op == POW and x < 0.0:
            raise ValueError("math domain error: the exponent's gradient needs "
                             "log(base), and the base %r is negative" % x)
    elif op == LOG and x == 0.0:
        raise ZeroDivisionError("float division by zero")
    return 0


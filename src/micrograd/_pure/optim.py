"""The optimizers' per-parameter loops on the twin: core/optim.pxi's functions, same names,
same formulas in the same order, as plain Python loops over the twin's nodes.

micrograd/optim.py drives both; read each function next to its counterpart in the core.
"""
import math

from micrograd._pure.declarations import LEAF

try:
    _fma = math.fma            # Python 3.13+
except AttributeError:
    def _fma(a, b, c):
        """a*b + c rounded once, as C's fma(): exact in integers (a double is n / 2**k),
        then int / int, which CPython rounds correctly. The core calls C's fma() where
        torch's kernels fuse (see core/optim.pxi)."""
        if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
            return a * b + c
        na, da = a.as_integer_ratio()
        nb, db = b.as_integer_ratio()
        nc, dc = c.as_integer_ratio()
        num = na * nb * dc + nc * da * db
        if num == 0:          # a*b == -c exactly: a*b is a double, the unfused sum is exact
            return a * b + c
        try:
            return num / (da * db * dc)
        except OverflowError:
            return a * b + c


def _double(x):
    """x as the core's C double arguments take it: a real number (float() would also
    parse a str)."""
    if isinstance(x, (str, bytes, bytearray)):
        raise TypeError(f"must be real number, not {type(x).__name__}")
    return float(x)


class _Doubles(list):
    """n floats, zeroed: one per parameter of a group (the core: a C array of doubles)."""

    def __init__(self, n=0):
        super().__init__([0.0] * n)

    def tolist(self):
        return list(self)

    @staticmethod
    def from_list(values):
        d = _Doubles()
        d.extend(float(x) for x in values)
        return d


def _check_len(params, d):
    if d is not None and len(d) != len(params):
        raise ValueError("optimizer state holds %d values for %d parameters" % (len(d), len(params)))


def _optim_same_params(current, checked):
    """Does the group's list still hold exactly the checked Values, in order (identity)?"""
    return len(current) == len(checked) and all(a is b for a, b in zip(current, checked))


def _unchanged(groups, states):
    """Is each group's 'params' still a list of exactly the Values checked (its state's
    'params' tuple)? See core/optim.pxi."""
    if len(states) != len(groups):
        return False
    for group, gs in zip(groups, states):
        if type(group) is not dict or type(gs) is not dict:
            return False
        params, checked = group.get("params"), gs.get("params")
        if (type(params) is not list or type(checked) is not tuple
                or not _optim_same_params(params, checked)):
            return False
    return True


def _optim_checked(groups, states):
    """Every group's checked tuple, if no group's 'params' changed (_unchanged); else
    None."""
    if not _unchanged(groups, states):
        return None
    return [gs["params"] for gs in states]


def _is_zero(x):
    """Is x an int or float equal to 0 (a hyperparameter that switches its term off)?"""
    return (type(x) is float or type(x) is int) and x == 0


def _optim_zero_grads(groups, states):
    """zero_grad of every group in one call, if no group's 'params' changed; see
    core/optim.pxi."""
    if not _unchanged(groups, states):
        return False
    for gs in states:
        _optim_zero_grad(gs["params"])
    return True


def _optim_sgd_plain(groups, states):
    """SGD.step in one call when every group is unchanged, its lr a float, with no
    momentum and no weight decay; else False and nothing changed. See core/optim.pxi."""
    if not _unchanged(groups, states):
        return False
    for group in groups:
        if (type(group.get("lr")) is not float or not _is_zero(group.get("momentum"))
                or not _is_zero(group.get("weight_decay"))):
            return False
    for group, gs in zip(groups, states):
        _optim_sgd(gs["params"], group["lr"], 0.0, 0.0, 0.0, False, None, False)
    return True


def _optim_first_non_leaf(params):
    """Index of the first parameter that is an op's result, or -1 (see core/optim.pxi)."""
    for i, p in enumerate(params):
        if p._code != LEAF:
            return i
    return -1


def _optim_zero_grad(params):
    """grad = 0.0 on every parameter."""
    for p in params:
        p._grad = 0.0


def _optim_sgd(params, lr, weight_decay, momentum, dampening, nesterov, buf, first):
    """One SGD step (torch's _single_tensor_sgd); see core/optim.pxi."""
    lr, weight_decay, momentum, dampening = _double(lr), _double(weight_decay), _double(momentum), _double(dampening)
    _check_len(params, buf)
    if momentum != 0 and buf is None:
        raise ValueError("SGD with momentum needs its buffers")
    for i, p in enumerate(params):
        g = p._grad
        if weight_decay != 0:
            g = _fma(weight_decay, p._data, g)
        if momentum != 0:
            if first:
                buf[i] = g
            else:
                buf[i] = _fma(1 - dampening, g, buf[i] * momentum)
            g = _fma(momentum, buf[i], g) if nesterov else buf[i]
        p._data = p._data - lr * g


def _optim_adam(params, lr, beta1, beta2, eps, weight_decay, decoupled, step,
                exp_avg, exp_avg_sq):
    """One Adam (decoupled: AdamW) step, torch's _single_tensor_adam; see core/optim.pxi."""
    lr, beta1, beta2, eps = _double(lr), _double(beta1), _double(beta2), _double(eps)
    weight_decay, step = _double(weight_decay), _double(step)
    w = 1 - beta1
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = (1 - beta2 ** step) ** 0.5
    _check_len(params, exp_avg)
    _check_len(params, exp_avg_sq)
    for i, p in enumerate(params):
        g = p._grad
        if weight_decay != 0:
            if decoupled:
                p._data = p._data * (1 - lr * weight_decay)
            else:
                g = _fma(weight_decay, p._data, g)
        m = exp_avg[i]
        m = _fma(w, g - m, m) if abs(w) < 0.5 else _fma(-(g - m), 1 - w, g)
        exp_avg[i] = m
        v = _fma((1 - beta2) * g, g, exp_avg_sq[i] * beta2)
        exp_avg_sq[i] = v
        denom = math.sqrt(v) / bc2_sqrt + eps
        p._data = p._data + (-step_size) * m / denom

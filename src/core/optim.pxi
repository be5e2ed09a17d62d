# The optimizers' per-parameter loops (micrograd/optim.py drives them; the twin's are
# micrograd/_pure/optim.py, same names). optim.py checks the parameters once, when a
# group is added or its list changes, and keeps them in a tuple: these loops take that
# tuple and touch each node's C fields through borrowed pointers, with no Python per
# parameter. Per-parameter state (momentum buffers, Adam's moments) lives in _Doubles,
# C arrays owned by the optimizer's per-group state.
#
# Formulas and evaluation order are torch.optim's single-tensor paths (torch 2.13,
# sgd.py / adam.py). torch's CPU kernels for add(alpha=), lerp and addcmul round a*b+c
# once (an FMA; measured against exact arithmetic on 0-d float64 tensors): those steps
# call fma() here, so Adam matches torch to the bit where torch's kernels use FMA. The
# SGD update itself stays p - lr*g rounded twice: it must be the notebook's
# `p.data -= lr * p.grad` bit for bit (torch's fused add_ differs in the last bit).
# Everywhere else setup.py's -ffp-contract=off keeps gcc from fusing on its own.
from libc.math cimport sqrt, fabs, fma

cdef extern from "Python.h":
    # under names of their own: core/extras.pxi declares these macros for PyObject*
    PyObject* _tuple_item "PyTuple_GET_ITEM"(object t, Py_ssize_t i)
    Py_ssize_t _tuple_size "PyTuple_GET_SIZE"(object t)
    PyObject* _list_item "PyList_GET_ITEM"(object l, Py_ssize_t i)
    Py_ssize_t _list_size "PyList_GET_SIZE"(object l)


@cython.final
cdef class _Doubles:
    """n doubles, zeroed: one per parameter of a group (a momentum buffer, exp_avg...)."""
    cdef double* v
    cdef Py_ssize_t n

    def __cinit__(self, Py_ssize_t n):
        self.v = <double*>calloc(n if n > 0 else 1, sizeof(double))
        if self.v == NULL:
            raise MemoryError()
        self.n = n

    def __dealloc__(self):
        free(self.v)

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.n:
            raise IndexError("_Doubles index out of range")
        return self.v[i]

    def tolist(self):
        return [self.v[i] for i in range(self.n)]

    @staticmethod
    def from_list(values):
        """A _Doubles holding values (floats), for load_state_dict."""
        cdef _Doubles d = _Doubles(len(values))
        cdef Py_ssize_t i
        for i in range(d.n):
            d.v[i] = values[i]
        return d


cdef inline Value _param(tuple params, Py_ssize_t i):
    # optim.py checked every item is this core's Value when it built the tuple
    return <Value>_tuple_item(params, i)


cdef int _check_len(tuple params, _Doubles d) except -1:
    if d is not None and d.n != _tuple_size(params):
        raise ValueError("optimizer state holds %d values for %d parameters" % (d.n, _tuple_size(params)))
    return 0


cdef extern from *:
    """
    #include <string.h>
    /* Do list and tuple hold the same n pointers? One memcmp of their item arrays. */
    static inline int micrograd_same_items(PyObject* list, PyObject* tuple, Py_ssize_t n) {
        return n == 0 || memcmp(((PyListObject*)list)->ob_item, ((PyTupleObject*)tuple)->ob_item,
                                (size_t)n * sizeof(PyObject*)) == 0;
    }
    """
    bint _same_items "micrograd_same_items"(object lst, object tup, Py_ssize_t n)


cpdef bint _optim_same_params(list current, tuple checked):
    """Does the group's list still hold exactly the checked Values, in order (identity)?
    Their pointers compared: the common case costs no Python per parameter."""
    cdef Py_ssize_t n = _list_size(current)
    return n == _tuple_size(checked) and _same_items(current, checked, n)


cdef bint _unchanged(list groups, list states):
    """Is each group's 'params' still a list of exactly the Values checked (its state's
    'params' tuple)? Optimizer._checked's common case for all groups at once."""
    cdef Py_ssize_t i, n = _list_size(groups)
    cdef object group, gs, params, checked
    if _list_size(states) != n:
        return False
    for i in range(n):
        group = <object>_list_item(groups, i)
        gs = <object>_list_item(states, i)
        if type(group) is not dict or type(gs) is not dict:
            return False
        params = (<dict>group).get("params")
        checked = (<dict>gs).get("params")
        if (type(params) is not list or type(checked) is not tuple
                or not _optim_same_params(params, checked)):
            return False
    return True


cdef inline tuple _checked_of(list states, Py_ssize_t i):
    return <tuple>(<dict>_list_item(states, i))["params"]


def _optim_checked(list groups, list states):
    """Every group's checked tuple, if no group's 'params' changed (_unchanged); else
    None."""
    if not _unchanged(groups, states):
        return None
    return [_checked_of(states, i) for i in range(_list_size(states))]


cdef bint _is_zero(object x):
    """Is x an int or float equal to 0 (a hyperparameter that switches its term off)?"""
    return (type(x) is float or type(x) is int) and x == 0


def _optim_zero_grads(list groups, list states):
    """zero_grad of every group in one call: True if each group's 'params' is unchanged
    (_unchanged), every grad then 0.0; else False and nothing changed."""
    cdef Py_ssize_t i
    if not _unchanged(groups, states):
        return False
    for i in range(_list_size(states)):
        _optim_zero_grad(_checked_of(states, i))
    return True


def _optim_sgd_plain(list groups, list states):
    """SGD.step in one call in a training loop's case: every group unchanged
    (_unchanged), its lr a float, no momentum and no weight decay. Then every group's
    p.data -= lr * p.grad and True; else False and nothing changed (optim.py's general
    path then reads each hyperparameter in Python, with its errors)."""
    cdef Py_ssize_t i
    if not _unchanged(groups, states):
        return False
    for i in range(_list_size(groups)):
        group = <dict>_list_item(groups, i)
        if (type(group.get("lr")) is not float or not _is_zero(group.get("momentum"))
                or not _is_zero(group.get("weight_decay"))):
            return False
    for i in range(_list_size(groups)):
        _optim_sgd(_checked_of(states, i), (<dict>_list_item(groups, i))["lr"],
                   0.0, 0.0, 0.0, False, None, False)
    return True


def _optim_first_non_leaf(tuple params):
    """Index of the first parameter that is an op's result (torch: "can't optimize a
    non-leaf Tensor"), or -1. Reads the op code: v._prev would sync every live Tape."""
    cdef Py_ssize_t i
    for i in range(_tuple_size(params)):
        if _param(params, i)._code != LEAF:
            return i
    return -1


cpdef _optim_zero_grad(tuple params):
    """grad = 0.0 on every parameter."""
    cdef Py_ssize_t i
    for i in range(_tuple_size(params)):
        _param(params, i).grad = 0.0


cpdef _optim_sgd(tuple params, double lr, double weight_decay, double momentum,
               double dampening, bint nesterov, _Doubles buf, bint first):
    """One SGD step (torch's _single_tensor_sgd). buf: momentum buffers (None without
    momentum); first: the buffers are new, so they start as the gradient itself."""
    cdef Py_ssize_t i
    cdef Value p
    cdef double g
    cdef double* m = NULL
    _check_len(params, buf)
    if momentum != 0:
        if buf is None:
            raise ValueError("SGD with momentum needs its buffers")
        m = buf.v
    for i in range(_tuple_size(params)):
        p = _param(params, i)
        g = p.grad
        if weight_decay != 0:
            g = fma(weight_decay, p.data, g)        # grad.add(param, alpha=weight_decay)
        if momentum != 0:
            if first:
                m[i] = g                            # torch.clone(grad)
            else:                                   # buf.mul_(momentum).add_(grad, alpha=1-dampening)
                m[i] = fma(1 - dampening, g, m[i] * momentum)
            if nesterov:
                g = fma(momentum, m[i], g)          # grad.add(buf, alpha=momentum)
            else:
                g = m[i]
        p.data = p.data - lr * g                    # param.add_(grad, alpha=-lr): the notebook's update


def _optim_adam(tuple params, double lr, double beta1, double beta2, double eps,
                double weight_decay, bint decoupled, double step,
                _Doubles exp_avg, _Doubles exp_avg_sq):
    """One Adam (decoupled: AdamW) step, torch's _single_tensor_adam; step is the group's
    step count after this step's increment."""
    cdef Py_ssize_t i
    cdef Value p
    cdef double g, w = 1 - beta1, m, v, denom
    # the bias corrections as torch computes them in Python floats (x ** y is C pow)
    cdef double step_size = lr / (1 - pow(beta1, step))
    cdef double bc2_sqrt = pow(1 - pow(beta2, step), 0.5)
    cdef double* ea = exp_avg.v
    cdef double* es = exp_avg_sq.v
    _check_len(params, exp_avg)
    _check_len(params, exp_avg_sq)
    for i in range(_tuple_size(params)):
        p = _param(params, i)
        g = p.grad
        if weight_decay != 0:
            if decoupled:
                p.data = p.data * (1 - lr * weight_decay)   # param.mul_(1 - lr*weight_decay)
            else:
                g = fma(weight_decay, p.data, g)            # grad.add(param, alpha=weight_decay)
        m = ea[i]                                           # exp_avg.lerp_(grad, 1 - beta1)
        m = fma(w, g - m, m) if fabs(w) < 0.5 else fma(-(g - m), 1 - w, g)
        ea[i] = m
        v = fma((1 - beta2) * g, g, es[i] * beta2)          # mul_(beta2).addcmul_(g, g, value=1-beta2)
        es[i] = v
        denom = sqrt(v) / bc2_sqrt + eps
        p.data = p.data + (-step_size) * m / denom          # param.addcdiv_(exp_avg, denom, value=-step_size)

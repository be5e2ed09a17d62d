"""Bad input: the exception class CPython's float/math raise, never a crash or a silent
NaN, and the operands left exactly as they were."""
import gc
import math
import subprocess
import sys

import numpy as np
import pytest

from conftest import subprocess_env
from micrograd import _engine


def snapshot(*values):
    return [(v.data, v.grad, v._op, v.label) for v in values]


# (id, operands as (data, grad) pairs, the failing call, expected exception, the CPython
#  float/math analog that raises the same class, or None where the README defines it)
CASES = [
    ("str_data", [], lambda V: V("abc"), TypeError, None),  # float("abc") is a ValueError
    ("none_data", [], lambda V: V(None), TypeError, lambda: float(None)),
    ("bytes_data", [], lambda V: V(b"1"), TypeError, None),
    ("complex_data", [], lambda V: V(1j), TypeError, lambda: float(1j)),
    ("value_data", [], lambda V: V(V(1.0)), TypeError, None),
    ("huge_int_data", [], lambda V: V(10**400), OverflowError, lambda: float(10**400)),
    # a numpy complex must not lose its imaginary part with only a warning (the twin and
    # Python's own complex give TypeError)
    ("numpy_complex_data", [], lambda V: V(np.complex128(1 + 2j)), TypeError,
     lambda: float(1 + 2j)),
    ("numpy_complex_operand", [1.0], lambda V, a: a + np.complex128(1 + 2j), TypeError, None),
    ("add_str", [1.0], lambda V, a: a + "x", TypeError, lambda: 1.0 + "x"),
    ("radd_str", [1.0], lambda V, a: "x" + a, TypeError, lambda: "x" + 1.0),
    ("sub_str", [1.0], lambda V, a: a - "x", TypeError, lambda: 1.0 - "x"),
    ("rsub_str", [1.0], lambda V, a: "x" - a, TypeError, lambda: "x" - 1.0),
    ("mul_none", [1.0], lambda V, a: a * None, TypeError, lambda: 1.0 * None),
    ("rmul_none", [1.0], lambda V, a: None * a, TypeError, lambda: None * 1.0),
    ("mul_list", [1.0], lambda V, a: a * [1.0], TypeError, lambda: 1.0 * [1.0]),
    ("div_str", [1.0], lambda V, a: a / "x", TypeError, lambda: 1.0 / "x"),
    ("rdiv_str", [1.0], lambda V, a: "x" / a, TypeError, lambda: "x" / 1.0),
    ("pow_str", [2.0], lambda V, a: a ** "x", TypeError, lambda: 2.0 ** "x"),
    ("rpow_str", [2.0], lambda V, a: "x" ** a, TypeError, lambda: "x" ** 2.0),
    ("add_complex", [1.0], lambda V, a: a + 1j, TypeError, None),
    ("ternary_pow", [2.0], lambda V, a: pow(a, 2, 5), TypeError, lambda: pow(2.0, 2, 5)),
    ("ternary_rpow", [2.0], lambda V, a: pow(2, a, 5), TypeError, lambda: pow(2, 2.0, 5)),
    ("ternary_pow_values", [2.0, 2.0], lambda V, a, b: pow(a, b, 5), TypeError, None),
    ("div_zero", [1.0], lambda V, a: a / 0, ZeroDivisionError, lambda: 1.0 / 0),
    ("div_zero_float", [1.0], lambda V, a: a / 0.0, ZeroDivisionError, lambda: 1.0 / 0.0),
    ("div_zero_numpy", [1.0], lambda V, a: a / np.float64(0.0), ZeroDivisionError, None),
    ("div_value_zero", [1.0, 0.0], lambda V, a, b: a / b, ZeroDivisionError, lambda: 1.0 / 0.0),
    ("rdiv_zero", [0.0], lambda V, a: 1 / a, ZeroDivisionError, lambda: 1 / 0.0),
    ("exp_overflow", [1000.0], lambda V, a: a.exp(), OverflowError, lambda: math.exp(1000.0)),
    ("log_zero", [0.0], lambda V, a: a.log(), ValueError, lambda: math.log(0.0)),
    ("log_negative", [-1.0], lambda V, a: a.log(), ValueError, lambda: math.log(-1.0)),
    ("log_minus_inf", [-math.inf], lambda V, a: a.log(), ValueError, lambda: math.log(-math.inf)),
    ("cube_root_negative", [-8.0], lambda V, a: a ** (1 / 3), ValueError,
     lambda: math.pow(-8.0, 1 / 3)),
    ("value_root_negative", [-8.0, 1 / 3], lambda V, a, b: a ** b, ValueError,
     lambda: math.pow(-8.0, 1 / 3)),
    ("zero_to_minus_one", [0.0], lambda V, a: a ** -1, ZeroDivisionError, lambda: 0.0 ** -1),
    ("zero_to_minus_half", [0.0], lambda V, a: a ** -0.5, ZeroDivisionError,
     lambda: 0.0 ** -0.5),
    ("zero_to_value_minus_one", [0.0, -1.0], lambda V, a, b: a ** b, ZeroDivisionError,
     lambda: 0.0 ** -1.0),
    ("number_zero_to_value", [-1.0], lambda V, a: 0 ** a, ZeroDivisionError,
     lambda: 0 ** -1.0),
    ("pow_overflow", [10.0], lambda V, a: a ** 400, OverflowError, lambda: 10.0 ** 400),
    ("pow_overflow_negative", [-10.0], lambda V, a: a ** 401, OverflowError,
     lambda: (-10.0) ** 401),
    ("rpow_overflow", [400.0], lambda V, a: 10 ** a, OverflowError, lambda: 10.0 ** 400.0),
    ("reciprocal_overflow", [1e-320], lambda V, a: 1 / a, OverflowError,
     lambda: (1e-320) ** -1),
    ("huge_int_operand", [1.0], lambda V, a: a + 10**400, OverflowError,
     lambda: 1.0 + 10**400),
    ("huge_int_exponent", [2.0], lambda V, a: a ** (10**400), OverflowError,
     lambda: 2.0 ** (10**400)),
    ("label_int", [1.0], lambda V, a: setattr(a, "label", 3), TypeError, None),
    ("label_in_constructor", [], lambda V: V(1.0, label=None), TypeError, None),
    ("data_str", [1.0], lambda V, a: setattr(a, "data", "abc"), TypeError, None),
    ("grad_none", [1.0], lambda V, a: setattr(a, "grad", None), TypeError, None),
]


@pytest.mark.parametrize("operands, call, expected, analog", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_and_changes_nothing(engine, operands, call, expected, analog):
    V = engine.Value
    values = []
    for i, x in enumerate(operands):
        v = V(x, label=f"v{i}")
        v.grad = 0.5 + i
        values.append(v)
    before = snapshot(*values)
    with pytest.raises(expected) as info:
        call(V, *values)
    assert info.type is expected, info.type
    assert snapshot(*values) == before
    if analog is not None:     # the same class CPython's float / math raise
        with pytest.raises(expected) as cpython:
            analog()
        assert cpython.type is expected


def test_value_in_operands_stays_usable_after_errors(engine):
    V = engine.Value
    a = V(2.0)
    for bad in ("x", None, [1], {}):
        with pytest.raises(TypeError):
            a + bad
        with pytest.raises(TypeError):
            a * bad
    b = a * 3 + 1
    b.backward()
    assert (b.data, a.grad) == (7.0, 3.0)


def test_no_silent_nan_or_inf_from_domain_errors(engine):
    V = engine.Value
    # every case where C's libm would quietly return inf or nan
    for make in (lambda: V(-1.0).log(), lambda: V(0.0).log(), lambda: V(-8.0) ** 0.5,
                 lambda: V(0.0) ** -2, lambda: V(710.0).exp(), lambda: V(1e308) ** 2,
                 lambda: V(1.0) / 0, lambda: V(-2.0) ** V(0.5)):
        with pytest.raises((ValueError, ZeroDivisionError, OverflowError)):
            make()


def test_ieee_specials_pass_through_like_python_floats(engine):
    """inf and nan given by the user propagate as with floats (no exception invented)."""
    V = engine.Value
    inf, nan = math.inf, math.nan
    assert V(inf).exp().data == inf
    assert V(-inf).exp().data == 0.0
    assert V(inf).log().data == inf
    assert V(inf).tanh().data == 1.0
    assert math.isnan(V(nan).exp().data)
    assert math.isnan((V(inf) - V(inf)).data)
    assert (V(0.0) ** -inf).data == 0.0 ** -inf == inf
    assert (V(-1.0) ** inf).data == (-1.0) ** inf
    assert (V(1e308) * 10).data == 1e308 * 10 == inf      # float * overflows to inf


# ---------------------------------------------------------------------------------
# backward(): checked before any grad changes
# ---------------------------------------------------------------------------------
def build_sqrt_graph(V):
    a = V(0.0, label="a")
    w = V(2.0, label="w")
    terms = [w * w * float(k) for k in range(50)]      # plenty of work before and after
    b = a ** 0.5                                        # d/da at 0: 0.5 * 0 ** -0.5
    c = sum(terms) + b * 3 + a * w
    nodes = [a, w, b, c] + terms
    return a, w, b, c, nodes


def test_backward_through_sqrt_of_zero_changes_no_grad(engine):
    V = engine.Value
    a, w, b, c, nodes = build_sqrt_graph(V)
    for i, v in enumerate(nodes):
        v.grad = 0.125 * i
    before = snapshot(*nodes)
    with pytest.raises(ZeroDivisionError) as info:
        c.backward()
    assert info.type is ZeroDivisionError
    assert snapshot(*nodes) == before
    with pytest.raises(ZeroDivisionError):
        0.5 * 0.0 ** -0.5           # what upstream's closure would have raised
    # nothing is left half-marked: the same graph works once the input is fixed
    for v in nodes:
        v.grad = 0.0
    a.data = 4.0
    c.backward()
    assert c.grad == 1.0
    # b.data is stale (0.0) but its rule reads a's current data, as upstream's closure does
    assert a.grad == pytest.approx(3 * 0.5 * 4.0 ** -0.5 + 2.0, rel=1e-15)
    assert w.grad == pytest.approx(sum(2 * 2.0 * k for k in range(50)) + 4.0, rel=1e-15)


def test_failed_backward_leaves_other_graphs_working(engine):
    V = engine.Value
    a, w, b, c, nodes = build_sqrt_graph(V)
    with pytest.raises(ZeroDivisionError):
        c.backward()
    d = w * w * w + a          # shares w and a with the failed walk
    d.backward()
    assert w.grad == 12.0 and a.grad == 1.0
    with pytest.raises(ZeroDivisionError):
        c.backward()
    assert w.grad == 12.0


# How Python code comes to run in the middle of a walk, each forced from a _backward the
# walk calls, so that it happens on every CPython: 3.12+ collects garbage only at the
# interpreter's eval-breaker checks (in bytecode), never inside the compiled walk itself.
REENTRY = ["_backward", "gc.collect", "automatic collection", "finalizer",
           "rule cycle freed by the collector"]


@pytest.fixture
def no_automatic_collection():
    """The collector runs only where a test asks it to."""
    enabled = gc.isenabled()
    gc.disable()
    yield
    if enabled:
        gc.enable()


@pytest.mark.parametrize("via", REENTRY)
def test_backward_started_during_a_walk_raises_and_the_outer_walk_stays_whole(
        engine, via, no_automatic_collection):
    """Python code runs inside a walk: a _backward the user assigned, and from there the
    garbage collector's callbacks and the finalizers of what it or reference counting
    frees. A backward() or Tape() from any of them would clobber the walk's scratch
    arrays (a crash in the compiled core) and marks, so it is a RuntimeError."""
    V = engine.Value
    x = V(0.5)
    inner = x
    for _ in range(3000):
        inner = inner * 1.0000001 + x
    xs = [V(1.0) for _ in range(2000)]
    s = V(0.0)
    for v in xs:
        s = s + v * 2.0
    hook = s * 1.0
    seen, in_rule = [], []

    def reenter():
        for call in (inner.backward, lambda: engine.Tape(inner)):
            try:
                call()
                seen.append("ran")
            except RuntimeError:
                seen.append("RuntimeError")

    def callback(phase, info):
        if phase == "start" and in_rule and not seen:
            reenter()

    class Reentering:
        def __del__(self):
            reenter()

    class DyingNode(V):
        def __del__(self):
            reenter()

    def sin(v):                         # a lecture-style op: out's _backward holds out
        out = V(math.sin(v.data), (v,), "sin")

        def _backward():
            v.grad += math.cos(v.data) * out.grad
        out._backward = _backward
        return out

    doomed = [DyingNode(1.0)]
    if via == "rule cycle freed by the collector":
        # kept alive only by its own _backward's closure: the compiled core's gc
        # callback breaks that cycle (the twin's is a plain one)
        sin(V(0.3)).probe = Reentering()

    def _backward():                    # runs in the middle of outer's walk
        in_rule.append(True)
        threshold = gc.get_threshold()
        try:
            if via == "_backward":
                reenter()
            elif via == "gc.collect":
                gc.collect()
            elif via == "automatic collection":
                gc.set_threshold(1)
                gc.enable()
                garbage = [[] for _ in range(100)]
                gc.disable()
                del garbage
            elif via == "finalizer":
                doomed.clear()          # a Value subclass's __del__, then its dealloc
            else:
                gc.collect()
        finally:
            gc.set_threshold(*threshold)
            in_rule.clear()
        s.grad += hook.grad
    hook._backward = _backward
    outer = hook + 1.0
    callbacks = [callback] if via in ("gc.collect", "automatic collection") else []
    gc.callbacks.extend(callbacks)
    try:
        outer.backward()
    finally:
        for cb in callbacks:
            gc.callbacks.remove(cb)
    assert seen == ["RuntimeError", "RuntimeError"]
    assert all(v.grad == 2.0 for v in xs)      # the outer walk went on, whole
    inner.backward()
    assert len(engine.Tape(inner)) == 9001 and x.grad > 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason=(
    "CPython 3.12+ runs the collector only at eval-breaker checks, which the compiled walk "
    "never makes: the test above forces it from a _backward instead"))
def test_collection_triggered_inside_the_compiled_walk_itself_cannot_reenter_it():
    """Up to 3.11 CPython collects as soon as enough objects are allocated, even inside C
    code: here while the walk raises (the error's objects), with no Python code of the
    user's running. The gc callback must find the walk claimed."""
    V = _engine.Value
    x = V(0.5)
    inner = x
    for _ in range(3000):
        inner = inner * 1.0000001 + x
    xs = [V(1.0) for _ in range(2000)]
    s = V(0.0)
    for v in xs:
        s = s + v * 2.0
    outer = s.log()
    s.data = 0.0                    # log's rule now divides by zero
    seen, armed = [], []

    def callback(phase, info):
        if phase == "start" and armed:
            try:
                inner.backward()
                seen.append("ran")
            except RuntimeError:
                seen.append("RuntimeError")

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    try:
        with pytest.raises(ZeroDivisionError):
            gc.set_threshold(1)     # collect at the next allocations: the error being raised
            armed.append(True)      # (no allocation between here and the walk)
            outer.backward()
    finally:
        armed.clear()
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)
    # collections inside the walk first, then (once it has ended) none refused
    refused = seen.count("RuntimeError")
    assert refused >= 1 and seen[:refused] == ["RuntimeError"] * refused, seen
    s.data = 4000.0                 # both graphs walk completely afterwards
    outer.backward()
    assert all(v.grad == 2.0 / 4000.0 for v in xs)
    inner.backward()
    assert len(_engine.Tape(inner)) == 9001 and x.grad > 0


def test_manual_backward_error_changes_no_grad(engine):
    V = engine.Value
    a = V(0.0)
    b = a ** 0.5
    b.grad = 1.0
    with pytest.raises(ZeroDivisionError):
        b._backward()
    assert (a.grad, b.grad) == (0.0, 1.0)


@pytest.mark.parametrize("case", ["pow_negative_base", "log_of_changed_input", "sqrt_overflow",
                                  "zero_to_zero"])
def test_backward_domain_errors(engine, case):
    V = engine.Value
    x = V(-2.0)
    y = V(2.0)
    if case == "pow_negative_base":
        out = x ** y + y            # forward is fine: (-2) ** 2 = 4; d/dy needs log(-2)
        expected = ValueError
    elif case == "log_of_changed_input":
        x.data = 1.0
        out = x.log() * y
        x.data = 0.0                # the rule reads the current data: 1/0
        expected = ZeroDivisionError
    elif case == "sqrt_overflow":
        x.data = 1e-300
        out = (x ** -1) * y         # d/dx = -x ** -2 = -1e600
        expected = OverflowError
    else:
        x.data = 0.0
        out = (x ** 0) * y          # upstream: 0 * 0 ** -1 raises too
        expected = ZeroDivisionError
    assert not math.isnan(out.data)
    nodes = [x, y, out]
    before = snapshot(*nodes)
    with pytest.raises(expected) as info:
        out.backward()
    assert info.type is expected
    assert snapshot(*nodes) == before


# ---------------------------------------------------------------------------------
# Crashes: a bad hand-built node must raise, not take the interpreter down
# ---------------------------------------------------------------------------------
BAD_CHILD = r'''
import sys
from micrograd.{module} import Value
a = Value(1.0)
try:
    n = Value(2.0, (a, {child}), "+")     # refusing it here is fine too
    n.backward()
except (AttributeError, TypeError) as exc:
    print("raised", type(exc).__name__)
else:
    print("no error", a.grad)
'''


@pytest.mark.parametrize("child", ["3.0", "'x'", "None", "OTHER"])
def test_hand_built_node_with_a_non_value_child_raises_instead_of_crashing(engine, child):
    """Upstream raises AttributeError ('float' object has no attribute '_prev')."""
    module = engine.__name__.rsplit(".", 1)[1]
    if child == "OTHER":    # a Value of the other engine
        other = "_pure" if module == "_engine" else "_engine"
        child = f"__import__('micrograd.{other}', fromlist=['Value']).Value(3.0)"
    code = BAD_CHILD.format(module=module, child=child)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert proc.returncode == 0, f"interpreter died with {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.startswith("raised"), proc.stdout


# ---------------------------------------------------------------------------------
# Calling __init__ again on a node that operations built (upstream allows it: the node
# starts over as a fresh Value). The compiled node keeps a POWC's exponent where other
# ops keep their second operand, so this must not leave either behind.
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("build", ["x ** 3", "x * y", "x + y", "x.relu()", "(x ** y)"])
def test_init_again_on_an_op_node_makes_a_fresh_node(engine, build):
    import copy
    import pickle
    V = engine.Value
    x, y = V(2.0), V(3.0)
    v = eval(build, {"x": x, "y": y})
    v.label = "old"
    v.backward()
    v.__init__(8.0, (x,), "f")
    assert (v.data, v.grad, v._op, v.label, v._prev) == (8.0, 0.0, "f", "", {x})
    z = v * 2 + y
    z.backward()
    assert v.grad == 2.0
    w = pickle.loads(pickle.dumps(v))
    assert (w.data, w._op) == (8.0, "f") and copy.deepcopy(v).data == 8.0
    v.__init__(5.0)                         # and back to a plain leaf
    assert (v.data, v.grad, v._op, v._prev) == (5.0, 0.0, "", set())
    del v, z, w


OOM_SCRIPT = r"""
import resource, sys
from micrograd._engine import Value, Tape
x = Value(0.5)
z = x
for i in range(300_000):
    z = z * 1.0000001 + x
def vm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (vm() + int(sys.argv[1]) * 2**20, hard))
try:
    {call}
except MemoryError:
    print("MemoryError")
finally:
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
t = Tape(z)                  # every node found again: no marks left behind
x.grad = 0.0
t.forward(); t.backward()
g = x.grad
for v in t.nodes:            # and eager backward walks them all again
    v.grad = 0.0
z.backward()
print(len(t), t.forward() == z.data, x.grad == g)
"""


# Address-space limits (MiB above what the built graph uses) at which the call runs out of
# memory at different points. Recording allocates its arrays in several steps; backward
# walks only the 600,000 op nodes and its two arrays reach ~17 MB, so its limits stay well
# below that (16 MiB can suffice). The smallest limit of each call runs in the fast suite.
OOM_LIMITS = {"Tape(z)": (4, 12, 20, 24, 28, 40, 56), "z.backward()": (1, 2, 4, 6, 8, 10, 12)}


@pytest.mark.memory
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")
@pytest.mark.parametrize("call, mib", [
    pytest.param(call, mib, marks=() if mib == min(limits) else pytest.mark.slow,
                 id=f"{call}-{mib}MiB")
    for call, limits in OOM_LIMITS.items() for mib in limits])
def test_running_out_of_memory_while_recording_raises_and_leaves_the_graph_whole(call, mib):
    """A MemoryError part-way through recording (at several points, by limiting the
    address space) is a clean MemoryError: no crash, and no node left marked as walked."""
    script = OOM_SCRIPT.replace("{call}", call)
    proc = subprocess.run([sys.executable, "-c", script, str(mib)], capture_output=True,
                          text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 0, (mib, proc.stderr[-2000:])
    assert proc.stdout.split() == ["MemoryError", "900001", "True", "True"], (mib, proc.stdout)

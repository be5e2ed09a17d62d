"""micrograd.optim on both cores: SGD is the notebook's update bit for bit, Adam/AdamW
follow torch.optim (compared with torch when installed, and always with a reference
written here from torch's documented algorithm), bad input raises torch's errors and
changes nothing."""
import math
import warnings

import pytest

from micrograd import demo as _demo
from micrograd.optim import SGD, Adam, AdamW

from conftest import engine_name


def small_demo(engine, full_on_core=True):
    """The moons demo: full size on the compiled core; a small one on the twin, whose
    eager steps cost ~0.5 s each at full size."""
    name = engine_name(engine)
    if name == "cython" and full_on_core:
        return _demo.Demo(name)
    return _demo.Demo(name, n_samples=20, hidden=(4, 4))


def snapshot(params):
    return [(p.data, p.grad) for p in params]


# ---------------------------------------------------------------------------------
# SGD is the notebook's update
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tape", [False, True], ids=["eager", "tape"])
def test_sgd_is_the_notebook_update_bit_for_bit(engine, tape):
    ref, dem = small_demo(engine), small_demo(engine)
    params = dem.model.parameters()
    assert snapshot(ref.model.parameters()) == snapshot(params)
    opt = SGD(params, lr=1.0)
    t = None
    for k in range(20):
        loss_ref = ref.step(k)[0]          # notebook: zero_grad, backward, p.data -= lr*p.grad
        opt.param_groups[0]["lr"] = _demo.learning_rate(k)
        if tape:
            if t is None:
                total, _, _ = dem.loss()
                t = engine.Tape(total)
            loss = t.forward()
            opt.zero_grad()
            t.backward()
        else:
            total, _, _ = dem.loss()
            loss = total.data
            opt.zero_grad()
            total.backward()
        opt.step()
        assert loss == loss_ref, k
        assert snapshot(params) == snapshot(ref.model.parameters()), k


class _Rate(float):
    """A float the one-call SGD step does not take (its type is not float): the step
    then goes the general way, reading each hyperparameter in Python."""


@pytest.mark.parametrize("lr", [0.37, _Rate(0.37), 1], ids=["float", "float-subclass", "int"])
def test_sgd_one_call_and_general_path_agree(engine, lr):
    """A training loop's plain SGD step runs in one kernel call; a rate it does not take
    goes the general path. Both are `p.data -= lr * p.grad`, and both zero grads."""
    ps = [engine.Value(0.1 * i - 0.7) for i in range(13)]
    opt = SGD(ps, lr=lr)
    for k in range(3):
        for i, p in enumerate(ps):
            p.grad = math.sin(i + k) * 3.1
        want = [p.data - float(lr) * p.grad for p in ps]
        opt.step()
        assert [p.data for p in ps] == want
        opt.zero_grad()
        assert all(p.grad == 0.0 for p in ps)


def test_sgd_bad_rate_set_later_raises_and_changes_nothing(engine):
    """A schedule's bad lr is not taken by the one-call step: the general path raises."""
    a = engine.Value(1.0)
    opt = SGD([a], lr=0.1)
    a.grad = 1.0
    opt.param_groups[0]["lr"] = "0.1"
    with pytest.raises(TypeError):
        opt.step()
    assert a.data == 1.0


def test_demo_tape_step_trains_with_sgd(engine):
    """Demo's Tape step (and so `python -m micrograd --tape`) updates through SGD, its rate
    set by the notebook's schedule; the losses equal the eager notebook loop's
    (test_tape.py compares them over 3 and 100 steps)."""
    d = small_demo(engine, full_on_core=False)
    d.train(3, tape=True)
    assert isinstance(d.opt, SGD)
    assert d.opt.param_groups[0]["params"] == d.model.parameters()
    assert d.opt.param_groups[0]["lr"] == _demo.learning_rate(2)
    assert d.opt.param_groups[0]["momentum"] == 0 and d.opt.param_groups[0]["weight_decay"] == 0


def test_zero_grad_sets_zero(engine):
    ps = [engine.Value(float(i)) for i in range(5)]
    for p in ps:
        p.grad = 3.5
    SGD(ps, lr=0.1).zero_grad()
    assert [p.grad for p in ps] == [0.0] * 5
    assert all(type(p.grad) is float for p in ps)


# ---------------------------------------------------------------------------------
# References written from torch's documented algorithms (torch.optim.SGD / Adam / AdamW)
# ---------------------------------------------------------------------------------
class RefSGD:
    def __init__(self, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        self.lr, self.mu, self.tau, self.wd, self.nesterov = lr, momentum, dampening, weight_decay, nesterov
        self.b = None

    def step(self, theta, g):
        out, bufs = [], []
        for i, (t, gi) in enumerate(zip(theta, g)):
            if self.wd:
                gi = gi + self.wd * t
            if self.mu:
                b = gi if self.b is None else self.mu * self.b[i] + (1 - self.tau) * gi
                bufs.append(b)
                gi = gi + self.mu * b if self.nesterov else b
            out.append(t - self.lr * gi)
        if self.mu:
            self.b = bufs
        return out


class RefAdam:
    def __init__(self, lr, betas, eps, weight_decay, decoupled):
        self.lr, (self.b1, self.b2), self.eps, self.wd, self.dec = lr, betas, eps, weight_decay, decoupled
        self.t, self.m, self.v = 0, None, None

    def step(self, theta, g):
        self.t += 1
        n = len(theta)
        m = self.m or [0.0] * n
        v = self.v or [0.0] * n
        out = []
        for i in range(n):
            t, gi = theta[i], g[i]
            if self.wd and self.dec:
                t = t - self.lr * self.wd * t
            elif self.wd:
                gi = gi + self.wd * t
            m[i] = self.b1 * m[i] + (1 - self.b1) * gi
            v[i] = self.b2 * v[i] + (1 - self.b2) * gi * gi
            mhat = m[i] / (1 - self.b1 ** self.t)
            vhat = v[i] / (1 - self.b2 ** self.t)
            out.append(t - self.lr * mhat / (math.sqrt(vhat) + self.eps))
        self.m, self.v = m, v
        return out


def close(a, b, rel):
    return all(abs(x - y) <= rel * max(abs(x), abs(y), 1e-300) for x, y in zip(a, b))


def gradients_of(dem):
    total, _, _ = dem.loss()
    dem.model.zero_grad()
    total.backward()
    return total.data


OPTIMIZERS = {
    "sgd_momentum": (lambda ps: SGD(ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
                     lambda: RefSGD(0.05, 0.9, 0.1, 1e-3)),
    "sgd_nesterov": (lambda ps: SGD(ps, lr=0.05, momentum=0.8, nesterov=True, weight_decay=1e-2),
                     lambda: RefSGD(0.05, 0.8, 0, 1e-2, True)),
    "adam": (lambda ps: Adam(ps, lr=0.01), lambda: RefAdam(0.01, (0.9, 0.999), 1e-8, 0, False)),
    "adam_l2": (lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
                lambda: RefAdam(0.01, (0.9, 0.999), 1e-8, 0.1, False)),
    "adamw": (lambda ps: AdamW(ps, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
              lambda: RefAdam(0.01, (0.8, 0.99), 1e-8, 0.1, True)),
}


@pytest.mark.parametrize("which", sorted(OPTIMIZERS))
def test_against_reference(engine, which):
    """The same gradients fed to ours and to the reference each step; 30 steps."""
    make, make_ref = OPTIMIZERS[which]
    dem = small_demo(engine, full_on_core=False)
    params = dem.model.parameters()
    opt, ref = make(params), make_ref()
    start = [p.data for p in params]
    for k in range(30):
        gradients_of(dem)
        theta = ref.step([p.data for p in params], [p.grad for p in params])
        opt.step()
        assert close([p.data for p in params], theta, 1e-12), k
    assert max(abs(p.data - s) for p, s in zip(params, start)) > 1e-3   # it trained


@pytest.mark.parametrize("which", ["adam", "adam_l2", "adamw", "sgd_nesterov"])
def test_against_torch(engine, which):
    """100 demo steps: our grads fed to torch.optim too; parameters agree to 1e-12."""
    torch = pytest.importorskip("torch")
    make, _ = OPTIMIZERS[which]
    dem = small_demo(engine)
    params = dem.model.parameters()
    tparams = [torch.tensor(p.data, dtype=torch.float64, requires_grad=True) for p in params]
    opt = make(params)
    kw = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    tcls = {SGD: torch.optim.SGD, Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}[type(opt)]
    topt = tcls(tparams, foreach=False, **kw)
    for k in range(100):
        gradients_of(dem)
        for p, t in zip(params, tparams):
            t.grad = torch.tensor(p.grad, dtype=torch.float64)
        opt.step()
        topt.step()
        ours, theirs = [p.data for p in params], [t.item() for t in tparams]
        # 1e-12 relative; an entry crossing zero is measured against 1e-3 of the largest
        # parameter: torch's sqrt of a 0-d float64 tensor is not correctly rounded (1 ulp
        # off math.sqrt, measured on torch 2.13), and a 1-ulp difference in a parameter
        # of ~1e-7 is ~1e-11 of it (seen on the small demo; the full one stays < 1e-12)
        floor = 1e-3 * max(map(abs, theirs))
        assert all(abs(x - y) <= 1e-12 * max(abs(y), floor) for x, y in zip(ours, theirs)), k


def test_cores_agree_bit_for_bit(both_engines):
    """The C loops and the twin's Python loops compute the same doubles."""
    runs = []
    for engine in both_engines:
        ps = [engine.Value(0.1 * i - 1) for i in range(20)]
        opts = [Adam(ps[:7], lr=0.1, weight_decay=0.01), AdamW(ps[7:14], lr=0.03),
                SGD(ps[14:], lr=0.2, momentum=0.5, nesterov=True)]
        for k in range(10):
            for i, p in enumerate(ps):
                p.grad = math.sin(i + k * 0.37) * (p.data + 0.5)
            for o in opts:
                o.step()
        runs.append([p.data for p in ps])
    assert runs[0] == runs[1]


# ---------------------------------------------------------------------------------
# param_groups, schedules, state_dict
# ---------------------------------------------------------------------------------
def test_param_groups_and_schedule(engine):
    a, b = engine.Value(1.0), engine.Value(1.0)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    a.grad = b.grad = 1.0
    opt.step()
    assert (a.data, b.data) == (1.0 - 0.1, 1.0 - 0.5)
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert a.data == 1.0 - 0.1 - 0.25
    c = engine.Value(2.0)
    c.grad = 1.0
    opt.add_param_group({"params": [c], "lr": 1.0})
    opt.step()
    assert c.data == 1.0
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    assert len(opt.param_groups) == 3


def test_group_params_list_changed(engine):
    a, b = engine.Value(1.0), engine.Value(1.0)
    opt = SGD([a], lr=0.1, momentum=0.5)
    a.grad = b.grad = 1.0
    opt.step()
    opt.param_groups[0]["params"].append(b)      # noticed at the next step
    opt.step()
    assert b.data == 1.0 - 0.1 * 1.0             # fresh buffer 0: 0.5*0 + 1
    opt.param_groups[0]["params"].append(3.0)
    before = snapshot([a, b])
    with pytest.raises(TypeError, match="one of the params is float"):
        opt.step()
    assert snapshot([a, b]) == before


def test_group_params_replaced_in_place_or_by_another_sequence(engine):
    """The step's one-call check of every group sees a swapped Value, a tuple for the
    list, and a second group's change, as _checked does."""
    a, b, c = engine.Value(1.0), engine.Value(2.0), engine.Value(3.0)
    opt = SGD([{"params": [a]}, {"params": [b]}], lr=0.5)
    a.grad = b.grad = c.grad = 1.0
    opt.param_groups[1]["params"][0] = c
    opt.step()
    assert (a.data, b.data, c.data) == (0.5, 2.0, 2.5)
    opt.param_groups[0]["params"] = (b,)
    opt.zero_grad()
    assert (a.grad, b.grad, c.grad) == (1.0, 0.0, 0.0)
    assert opt.param_groups[0]["params"] == [b]


@pytest.mark.parametrize("which", sorted(OPTIMIZERS))
def test_state_dict_round_trip(engine, which):
    make, _ = OPTIMIZERS[which]
    ps = [engine.Value(0.3 * i) for i in range(6)]
    qs = [engine.Value(0.3 * i) for i in range(6)]
    o1, o2 = make(ps), make(qs)
    for k in range(3):
        for p in ps:
            p.grad = p.data * 2 - 1
        o1.step()
    sd = o1.state_dict()
    assert sorted(sd["state"]) == list(range(6))
    assert sd["param_groups"][0]["params"] == list(range(6))
    assert all(type(x) is float for e in sd["state"].values() for x in e.values())
    for p, q in zip(ps, qs):
        q.data = p.data
    o2.load_state_dict(sd)
    assert o2.state_dict() == sd
    for k in range(3):
        for p, q in zip(ps, qs):
            p.grad = q.grad = p.data * 2 - 1
        o1.step()
        o2.step()
    assert [p.data for p in ps] == [q.data for q in qs]


def test_load_state_dict_mismatch_changes_nothing(engine):
    ps = [engine.Value(1.0), engine.Value(2.0)]
    opt = Adam(ps, lr=0.1)
    before = opt.state_dict()
    other = Adam([engine.Value(1.0)], lr=0.5).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(other)
    assert opt.state_dict() == before


# ---------------------------------------------------------------------------------
# Bad input: torch's errors, nothing changed
# ---------------------------------------------------------------------------------
BAD = [
    (lambda ps: SGD(ps, lr=-1), ValueError, "Invalid learning rate: -1"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), ValueError, "Invalid momentum value: -0.5"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    (lambda ps: SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "Nesterov"),
    (lambda ps: Adam(ps, lr=-1), ValueError, "Invalid learning rate: -1"),
    (lambda ps: Adam(ps, betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1: -0.1"),
    (lambda ps: AdamW(ps, eps=-1e-8), ValueError, "Invalid epsilon value: -1e-08"),
    (lambda ps: AdamW(ps, weight_decay=-0.1), ValueError, "Invalid weight_decay value: -0.1"),
    (lambda ps: SGD([], lr=0.1), ValueError, "optimizer got an empty parameter list"),
    (lambda ps: SGD(ps + [1.5], lr=0.1), TypeError,
     "optimizer can only optimize Values, but one of the params is float"),
    (lambda ps: Adam(ps[0]), TypeError, "should be an iterable of Values or dicts"),
    (lambda ps: SGD([{"params": ps[:1]}, {"params": ps[:1]}], lr=0.1), ValueError,
     "some parameters appear in more than one parameter group"),
    (lambda ps: SGD([ps[0], ps[0] * ps[1]], lr=0.1), ValueError, "can't optimize a non-leaf Value"),
    (lambda ps: SGD({"params": set(ps)} and [{"params": set(ps)}], lr=0.1), TypeError, "ordered collections"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_input_raises_and_changes_nothing(engine, case):
    make, exc, msg = BAD[case]
    ps = [engine.Value(1.0), engine.Value(-2.0)]
    for p in ps:
        p.grad = 0.5
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(".", r"\.")):
        make(ps)
    assert snapshot(ps) == [(1.0, 0.5), (-2.0, 0.5)]


def test_bad_param_group_changes_nothing(engine):
    a, b = engine.Value(1.0), engine.Value(2.0)
    opt = Adam([a])
    group = {"params": [b], "lr": -3}
    with pytest.raises(ValueError, match="Invalid learning rate: -3"):
        opt.add_param_group(group)
    assert len(opt.param_groups) == 1 and group == {"params": [b], "lr": -3}


def test_duplicate_in_group_warns_as_torch(engine):
    a = engine.Value(1.0)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        SGD([a, a], lr=0.1)


def test_mixing_cores_is_a_type_error(both_engines):
    c, t = both_engines.compiled.Value(1.0), both_engines.twin.Value(1.0)
    with pytest.raises(TypeError, match="Values of one core"):
        SGD([c, t], lr=0.1)
    opt = SGD([c], lr=0.1)
    with pytest.raises(TypeError, match="Values of one core"):
        opt.add_param_group({"params": [t]})
    assert len(opt.param_groups) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SGD([t], lr=0.1).step()      # each core alone is fine

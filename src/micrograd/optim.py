"""Optimizers shaped like torch.optim: SGD, Adam and AdamW over micrograd Values.

    from micrograd.optim import SGD
    opt = SGD(model.parameters(), lr=0.1)
    for k in range(steps):
        loss = ...
        opt.zero_grad()
        loss.backward()
        opt.step()

The per-parameter loops are the core's: on the compiled core they run in C over the
parameter nodes (src/core/optim.pxi), on the twin in Python (micrograd/_pure/optim.py).
This file only checks input and keeps the bookkeeping: param_groups, state, state_dict.
The updates follow torch.optim's formulas (torch 2.13, single-tensor paths), so plain SGD
is exactly the notebook's ``p.data -= lr * p.grad``. One difference: Adam's step count is
kept per param group, not per parameter (every parameter has a grad here, so all of a
group's parameters step together; a parameter added to a group later joins its count).
"""
import warnings
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Optional, TypeVar, Union, overload

from micrograd.engine import Value

# What an optimizer takes, as torch.optim: Values, or dicts of 'params' and hyperparameters.
ParamsT = Union[Iterable[Value], Iterable[Dict[str, Any]]]
_T = TypeVar("_T")

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _cores() -> list[tuple[type, ModuleType]]:
    """[(Value class, kernel module)] of the cores that import: compiled first, then twin."""
    out: list[tuple[type, ModuleType]] = []
    try:
        from micrograd import _engine
        out.append((_engine.Value, _engine))
    except ImportError:   # a source checkout never built: the twin alone
        pass
    from micrograd import _pure
    from micrograd._pure import optim as _pure_optim
    out.append((_pure.Value, _pure_optim))
    return out


def _typename(obj: object) -> str:
    # as torch.typename: builtins by bare name, others qualified by their module
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class Optimizer:
    """The shared part: param groups, per-group state, state_dict. Subclasses define
    defaults, _check_hyper (their ValueErrors) and _step_group."""
    _buffers: tuple[str, ...]     # names of the per-parameter state arrays
    _counts_steps: bool
    _check_hyper: Callable[[Dict[str, Any]], None]
    _step_group: Callable[[Dict[str, Any], Dict[str, Any], tuple[Value, ...]], None]

    def __init__(self, params: ParamsT, defaults: Dict[str, Any]) -> None:
        cores = _cores()
        if isinstance(params, tuple(v for v, _ in cores)):
            raise TypeError("params argument given to the optimizer should be an iterable "
                            "of Values or dicts, but got " + _typename(params))
        self.defaults = defaults
        self.param_groups: list[Dict[str, Any]] = []
        self._group_state: list[Dict[str, Any]] = []   # per group: {'params': checked tuple, 'step': int, buffers}
        self._value: Optional[type] = None
        self._kernel: Any = None
        groups: list[Any] = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- groups -------------------------------------------------------------------------
    def _check_values(self, values: list[Value]) -> None:
        """TypeError unless every item is a Value of one core (the first one seen)."""
        cores = _cores()
        for v in values:
            for value_cls, kernel in cores:
                if isinstance(v, value_cls):
                    break
            else:
                raise TypeError("optimizer can only optimize Values, but one of the params is "
                                + _typename(v))
            if self._value is not None and value_cls is not self._value:
                raise TypeError(f"optimizer params must all be Values of one core: one is "
                                f"{_typename(v)}, the others {self._value.__module__}.Value")
            if self._value is None:
                self._value, self._kernel = value_cls, kernel
        if self._kernel is not None and self._kernel._optim_first_non_leaf(tuple(values)) >= 0:
            raise ValueError("can't optimize a non-leaf Value")

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group (a dict with 'params' and optional hyperparameters). Checked in full
        first: a bad group changes nothing. The dict is copied, not modified."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use a list instead.")
        params = [params] if self._is_value(params) else list(params)
        saved = (self._value, self._kernel)
        try:
            self._check_values(params)
            for name, default in self.defaults.items():
                if default is _required and name not in group:
                    raise ValueError("parameter group didn't specify a value of required "
                                     f"optimization parameter {name}")
                group.setdefault(name, default)
            self._check_hyper(group)
            if len(params) != len(set(params)):   # Values hash by identity
                warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                              "in future, this will cause an error; "
                              "see github.com/pytorch/pytorch/issues/40967 for more information",
                              stacklevel=3)
            seen: set[Value] = set()
            for g in self.param_groups:
                seen.update(g["params"])
            if not seen.isdisjoint(params):
                raise ValueError("some parameters appear in more than one parameter group")
        except BaseException:
            self._value, self._kernel = saved
            raise
        group["params"] = params
        self.param_groups.append(group)
        self._group_state.append({"params": tuple(params), "step": 0})

    def _is_value(self, x: object) -> bool:
        return isinstance(x, tuple(v for v, _ in _cores()))

    def _checked(self, i: int) -> tuple[Value, ...]:
        """Group i's parameters as the checked tuple the kernels take; rechecked (and its
        state remapped by identity) only if the group's list changed since."""
        group, gs = self.param_groups[i], self._group_state[i]
        params = group["params"]
        if type(params) is not list:
            params = group["params"] = list(params)
        if not self._kernel._optim_same_params(params, gs["params"]):
            self._check_values(params)
            old = {id(p): j for j, p in enumerate(gs["params"])}
            for name in self._buffers:
                if name in gs:
                    values = gs[name].tolist()
                    gs[name] = self._kernel._Doubles.from_list(
                        [values[old[id(p)]] if id(p) in old else 0.0 for p in params])
            gs["params"] = tuple(params)
        checked: tuple[Value, ...] = gs["params"]
        return checked

    def _all_checked(self) -> list[tuple[Value, ...]]:
        """Every group's _checked, all before any is used; in one kernel call when no
        group's list changed (a training loop's every step)."""
        checked: Optional[list[tuple[Value, ...]]] = self._kernel._optim_checked(
            self.param_groups, self._group_state)
        return checked or [self._checked(i) for i in range(len(self.param_groups))]

    # -- the torch.optim API ---------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Set every parameter's grad to 0.0 (a Value's grad is a float: never None)."""
        if self._kernel._optim_zero_grads(self.param_groups, self._group_state):
            return      # a training loop's case, in one call
        for params in self._all_checked():
            self._kernel._optim_zero_grad(params)

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], _T]) -> _T: ...

    def step(self, closure: Optional[Callable[[], _T]] = None) -> Optional[_T]:
        """One update of every group; with closure, calls it first and returns its loss."""
        loss = None
        if closure is not None:
            loss = closure()
        for group, gs, params in zip(self.param_groups, self._group_state, self._all_checked()):
            self._step_group(group, gs, params)
        return loss

    def state_dict(self) -> Dict[str, Any]:
        """torch's shape: {'state': {index: {...floats}}, 'param_groups': [{..., 'params':
        [indices]}]}; indices number the parameters across groups in order."""
        state: Dict[int, Dict[str, float]] = {}
        groups: list[Dict[str, Any]] = []
        base = 0
        for i, group in enumerate(self.param_groups):
            params = self._checked(i)
            gs = self._group_state[i]
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(base, base + len(params)))
            groups.append(packed)
            names = [n for n in self._buffers if n in gs]
            if names:
                lists = {n: gs[n].tolist() for n in names}
                for j in range(len(params)):
                    entry: Dict[str, float] = {"step": float(gs["step"])} if self._counts_steps else {}
                    entry.update((n, lists[n][j]) for n in names)
                    state[base + j] = entry
            base += len(params)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore hyperparameters and state from state_dict() of an optimizer over as many
        parameters in as many groups. Checked in full first: a bad one changes nothing."""
        groups, saved = state_dict["param_groups"], state_dict["state"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        checked = [self._checked(i) for i in range(len(self.param_groups))]
        if any(len(p) != len(g["params"]) for p, g in zip(checked, groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        new_groups: list[Dict[str, Any]] = []
        new_states: list[Dict[str, Any]] = []
        for group, packed, params in zip(self.param_groups, groups, checked):
            g = dict(packed)
            g["params"] = group["params"]
            self._check_hyper(g)
            gs: Dict[str, Any] = {"params": params, "step": 0}
            entries = [saved.get(idx) for idx in packed["params"]]
            present = [e for e in entries if e is not None]
            if present:
                if len(present) != len(entries):
                    raise ValueError("loaded state dict has state for only some of a group's parameters")
                for name in self._buffers:
                    if name in present[0]:
                        gs[name] = self._kernel._Doubles.from_list([float(e[name]) for e in entries])
                if self._counts_steps:
                    gs["step"] = int(float(present[0]["step"]))
            new_groups.append(g)
            new_states.append(gs)
        for group, g in zip(self.param_groups, new_groups):   # in place: schedules hold them
            group.clear()
            group.update(g)
        self._group_state = new_states

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


_required = _Required()


def _check_nonneg(name: str, x: float) -> None:
    if not 0.0 <= x:
        raise ValueError(f"Invalid {name}: {x}")


class SGD(Optimizer):
    """torch.optim.SGD: weight decay (L2, added to the grad), momentum with dampening,
    Nesterov. With none of them, exactly ``p.data -= lr * p.grad``."""
    _buffers = ("momentum_buffer",)
    _counts_steps = False

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @staticmethod
    def _check_hyper(g: Dict[str, Any]) -> None:
        if not 0.0 <= g["lr"]:
            raise ValueError(f"Invalid learning rate: {g['lr']}")
        _check_nonneg("momentum value", g["momentum"])
        _check_nonneg("weight_decay value", g["weight_decay"])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], _T]) -> _T: ...

    def step(self, closure: Optional[Callable[[], _T]] = None) -> Optional[_T]:
        """One update of every group; with closure, calls it first and returns its loss."""
        if closure is None and self._kernel._optim_sgd_plain(self.param_groups, self._group_state):
            return None     # a training loop's case (plain SGD), in one call
        return super().step(closure)

    def _step_group(self, group: Dict[str, Any], gs: Dict[str, Any], params: tuple[Value, ...]) -> None:
        momentum = group["momentum"]
        buf, first = None, False
        if momentum != 0:
            buf = gs.get("momentum_buffer")
            if buf is None:
                buf, first = self._kernel._Doubles(len(params)), True
        self._kernel._optim_sgd(params, group["lr"], group["weight_decay"], momentum,
                                group["dampening"], group["nesterov"], buf, first)
        if first:   # kept only once the step went through
            gs["momentum_buffer"] = buf


class Adam(Optimizer):
    """torch.optim.Adam (no amsgrad): L2 weight decay added to the grad."""
    _buffers = ("exp_avg", "exp_avg_sq")
    _counts_steps = True
    _decoupled = False

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @staticmethod
    def _check_hyper(g: Dict[str, Any]) -> None:
        if not 0.0 <= g["lr"]:
            raise ValueError(f"Invalid learning rate: {g['lr']}")
        _check_nonneg("epsilon value", g["eps"])
        betas = g["betas"]
        for i in (0, 1):
            if not 0.0 <= betas[i] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
        _check_nonneg("weight_decay value", g["weight_decay"])

    def _step_group(self, group: Dict[str, Any], gs: Dict[str, Any], params: tuple[Value, ...]) -> None:
        k = self._kernel
        ea = gs.get("exp_avg")
        es = gs.get("exp_avg_sq")
        if ea is None:
            ea, es = k._Doubles(len(params)), k._Doubles(len(params))
        beta1, beta2 = group["betas"]
        k._optim_adam(params, group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                      self._decoupled, gs["step"] + 1, ea, es)
        gs["exp_avg"], gs["exp_avg_sq"] = ea, es
        gs["step"] += 1


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay, ``p *= 1 - lr*weight_decay`` before the
    Adam step."""
    _decoupled = True

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        Optimizer.__init__(self, params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

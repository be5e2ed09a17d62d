"""Upstream micrograd's moons demo (demo.ipynb), runnable on either backend.

The data, model, loss and update are the notebook's, expression for expression:
``make_moons(n_samples=100, noise=0.1)`` after ``np.random.seed(1337); random.seed(1337)``,
labels mapped to -1/+1, ``MLP(2, [16, 16, 1])``, SVM max-margin loss averaged plus
``1e-4 * sum(p*p)``, full batch, SGD with ``lr = 1.0 - 0.9*k/100`` (:func:`learning_rate`).
The eager step updates with the notebook's own loop (upstream runs it too, and has no
optimizer); the Tape step with ``micrograd.optim.SGD``, which is that loop bit for bit.

Needs numpy and scikit-learn (the ``demo`` extra), like the notebook.
"""
import importlib.util
import random
import time
from types import ModuleType
from typing import Any, Callable, Optional, Union

# The demo runs any engine (both cores, upstream, PyTorch in the benchmarks), and numpy is an
# optional dependency: scalars, models and arrays are typed Any here.
_Scalar = Any
_Array = Any

PHASES = ("forward", "backward", "update", "free", "step")


def learning_rate(k: int, steps: int = 100) -> float:
    """The notebook's schedule, ``1.0 - 0.9*k/100``; a run longer than 100 steps stretches it
    over all its steps, so the rate stays positive."""
    return 1.0 - 0.9*k/max(steps, 100)


def engine_module(engine: str) -> ModuleType:
    """The module that provides Value and Tape for engine 'cython' or 'python'."""
    if engine == "cython":
        from micrograd import _engine
        return _engine
    if engine == "python":
        from micrograd import _pure
        return _pure
    raise ValueError(f"engine must be 'cython' or 'python', not {engine!r}")


def nn_module(engine: Union[str, Callable[[float], _Scalar]]) -> ModuleType:
    """A fresh copy of micrograd.nn whose Value is engine's ('cython' or 'python'), or
    engine itself if it is a callable that makes scalars (the benchmark's torch tensors).

    nn.py looks Value up as a module global when it builds neurons, so one process
    can hold models of both backends side by side (the CLI compares them that way).
    """
    spec = importlib.util.find_spec("micrograd.nn")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.Value = engine if callable(engine) else engine_module(engine).Value
    return mod


def moons(n_samples: int = 100, noise: float = 0.1, seed: int = 1337) -> tuple[_Array, _Array]:
    """The notebook's data: seeds numpy's and Python's global RNGs, as the notebook does."""
    import numpy as np
    from sklearn.datasets import make_moons

    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples=n_samples, noise=noise)
    y = y * 2 - 1  # make y be -1 or 1
    return X, y


def notebook_loss(Value: Callable[[float], _Scalar], model: Any, X: _Array, y: _Array) -> tuple[_Scalar, float, list[_Scalar]]:
    """The notebook's loss(), expression for expression: (total_loss, accuracy, scores).

    Shared by every engine that runs the demo: both cores here, and upstream and
    PyTorch in the benchmarks."""
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in model.parameters()))
    total_loss = data_loss + reg_loss
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
    return total_loss, sum(accuracy) / len(accuracy), scores


class Demo:
    """The moons classifier on one engine: data, model, and a training step in four phases
    (forward, backward, update, free), eager as the notebook or replayed from a Tape.

    engine is 'cython', 'python' (the twin), or 'upstream': whatever package is importable
    as ``micrograd`` in this process (upstream 0.1.0 when run with its folder on the path;
    it has no Tape)."""

    Value: Callable[[float], _Scalar]
    Tape: Optional[Callable[[_Scalar], Any]]
    model: Any
    X: _Array
    y: _Array
    tape: Any
    opt: Any                # micrograd.optim.SGD for the Tape step (upstream has no optim)
    total_loss: _Scalar
    _scores: Any

    def __init__(self, engine: str = "cython", n_samples: int = 100, seed: int = 1337,
                 hidden: tuple[int, ...] = (16, 16)) -> None:
        self.engine = engine
        self.Value, self.Tape, MLP = self.backend(engine)
        self.X, self.y = moons(n_samples=n_samples, seed=seed)
        self.model = MLP(2, list(hidden) + [1])  # draws after the data, as upstream
        self.tape = self.opt = self.total_loss = self._scores = None

    @staticmethod
    def backend(engine: str) -> tuple[Callable[[float], _Scalar], Optional[Callable[[_Scalar], Any]], Any]:
        """(Value, Tape or None, MLP class) of engine."""
        if engine == "upstream":
            from micrograd.engine import Value
            from micrograd.nn import MLP
            return Value, None, MLP
        return engine_module(engine).Value, engine_module(engine).Tape, nn_module(engine).MLP

    def loss(self) -> tuple[_Scalar, float, list[_Scalar]]:
        """The notebook's loss(): (total_loss, accuracy, scores) for the full batch."""
        return notebook_loss(self.Value, self.model, self.X, self.y)

    def forward(self, tape: bool = False) -> float:
        """Build the loss (tape: replay the Tape recorded on the first call); returns accuracy.

        A Tape freezes the graph, so its labels are listed once, and its parameters go to
        an SGD optimizer made with it."""
        if not tape:
            self.total_loss, acc, self._scores = self.loss()
            return acc
        if self.tape is None:
            self.total_loss, _, self._scores = self.loss()
            self.tape = self.Tape(self.total_loss)
            from micrograd.optim import SGD   # here: upstream, which loads this file too, has none
            self.opt = SGD(self.model.parameters(), lr=learning_rate(0))
            self._positive = [bool(yi > 0) for yi in self.y]
        self._replayed = self.tape.forward()
        return sum(pos == (s.data > 0) for pos, s in zip(self._positive, self._scores)) / len(self._scores)

    def backward(self, tape: bool = False) -> None:
        """``model.zero_grad()`` then the loss's backward (tape: ``opt.zero_grad()`` and the
        Tape's)."""
        if tape:
            self.opt.zero_grad()
            self.tape.backward()
        else:
            self.model.zero_grad()
            self.total_loss.backward()

    def update(self, k: int, steps: int = 100, tape: bool = False) -> None:
        """The notebook's SGD step over every parameter (tape: the optimizer's, its rate set
        by the schedule)."""
        lr = learning_rate(k, steps)
        if tape:
            self.opt.param_groups[0]["lr"] = lr
            self.opt.step()
            return
        for p in self.model.parameters():
            p.data -= lr * p.grad

    def free(self, tape: bool = False) -> float:
        """The step's loss as a float; an eager step's graph is dropped here."""
        if tape:
            return self._replayed
        loss = float(self.total_loss.data)
        self.total_loss = self._scores = None
        return loss

    def step(self, k: int, steps: int = 100, tape: bool = False) -> tuple[float, float]:
        """One training step: (loss, accuracy)."""
        acc = self.forward(tape)
        self.backward(tape)
        self.update(k, steps, tape)
        return self.free(tape), acc

    def tape_step(self, k: int, steps: int = 100) -> tuple[float, float]:
        """The same step replayed from a Tape recorded on the first call."""
        return self.step(k, steps, tape=True)

    def train(self, steps: int = 100, tape: bool = False,
              callback: Optional[Callable[[int, float, float], object]] = None) -> list[tuple[float, float]]:
        """Train for steps; returns the list of (loss, accuracy) per step."""
        history = []
        for k in range(steps):
            history.append(self.step(k, steps, tape))
            if callback is not None:
                callback(k, *history[-1])
        return history

    def timed_steps(self, steps: int, warmup: int = 1, tape: bool = False,
                    clock: Callable[[], int] = time.process_time_ns
                    ) -> tuple[dict[str, list[int]], list[float], float]:
        """warmup + steps training steps with the clock read between phases (process CPU
        time by default): ({phase: [ns per timed step]}, [loss per step], last accuracy)."""
        times: dict[str, list[int]] = {ph: [] for ph in PHASES}
        losses: list[float] = []
        for i in range(warmup + steps):
            t0 = clock()
            acc = self.forward(tape)
            t1 = clock()
            self.backward(tape)
            t2 = clock()
            self.update(i % 100, tape=tape)
            t3 = clock()
            losses.append(self.free(tape))
            t4 = clock()
            if i >= warmup:
                for ph, t in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    times[ph].append(t)
        return times, losses, acc

"""Upstream micrograd's moons demo (demo.ipynb), runnable on either backend.

The data, model, loss and update are the notebook's, expression for expression:
``make_moons(n_samples=100, noise=0.1)`` after ``np.random.seed(1337); random.seed(1337)``,
labels mapped to -1/+1, ``MLP(2, [16, 16, 1])``, SVM max-margin loss averaged plus
``1e-4 * sum(p*p)``, full batch, SGD with ``lr = 1.0 - 0.9*k/100``.

Needs numpy and scikit-learn (the ``demo`` extra), like the notebook.
"""
import importlib.util
import random


def engine_module(engine):
    """The module that provides Value and Tape for engine 'cython' or 'python'."""
    if engine == "cython":
        from micrograd import _engine
        return _engine
    if engine == "python":
        from micrograd import _pure
        return _pure
    raise ValueError(f"engine must be 'cython' or 'python', not {engine!r}")


def nn_module(engine):
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


def moons(n_samples=100, noise=0.1, seed=1337):
    """The notebook's data: seeds numpy's and Python's global RNGs, as the notebook does."""
    import numpy as np
    from sklearn.datasets import make_moons

    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples=n_samples, noise=noise)
    y = y * 2 - 1  # make y be -1 or 1
    return X, y


def notebook_loss(Value, model, X, y):
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
    """The moons classifier on one backend: data, model, and one training step."""

    def __init__(self, engine="cython", n_samples=100, seed=1337, hidden=(16, 16)):
        self.engine = engine
        self.Value = engine_module(engine).Value
        self.Tape = engine_module(engine).Tape
        self.X, self.y = moons(n_samples=n_samples, seed=seed)
        self.model = nn_module(engine).MLP(2, list(hidden) + [1])  # draws after the data, as upstream
        self.tape = None

    def loss(self):
        """The notebook's loss(): (total_loss, accuracy, scores) for the full batch."""
        return notebook_loss(self.Value, self.model, self.X, self.y)

    def update(self, k, steps=100):
        # upstream decays over 100 steps; a longer run stretches the decay so lr stays > 0
        learning_rate = 1.0 - 0.9*k/max(steps, 100)
        for p in self.model.parameters():
            p.data -= learning_rate * p.grad

    def step(self, k, steps=100):
        """One eager step, as the notebook: build, backward, SGD. Returns (loss, accuracy)."""
        total_loss, acc, _ = self.loss()
        self.model.zero_grad()
        total_loss.backward()
        self.update(k, steps)
        return total_loss.data, acc

    def tape_step(self, k, steps=100):
        """The same step replayed from a Tape recorded on the first call.

        The graph is frozen, so so are its parameters and labels: both are listed once.
        """
        if self.tape is None:
            total_loss, _, self._scores = self.loss()
            self.tape = self.Tape(total_loss)
            self._params = self.model.parameters()
            self._positive = [bool(yi > 0) for yi in self.y]
        loss = self.tape.forward()
        for p in self._params:          # model.zero_grad()
            p.grad = 0
        self.tape.backward()
        learning_rate = 1.0 - 0.9*k/max(steps, 100)
        for p in self._params:
            p.data -= learning_rate * p.grad
        acc = sum(pos == (s.data > 0) for pos, s in zip(self._positive, self._scores)) / len(self._scores)
        return loss, acc

    def train(self, steps=100, tape=False, callback=None):
        """Train for steps; returns the list of (loss, accuracy) per step."""
        history = []
        step = self.tape_step if tape else self.step
        for k in range(steps):
            history.append(step(k, steps))
            if callback is not None:
                callback(k, *history[-1])
        return history

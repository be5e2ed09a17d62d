# micrograd-compiled: this line marks the file as ours (micrograd/__init__.py checks it)
"""Upstream micrograd's nn.py, unchanged but for where Value comes from and type annotations.

Same classes, arguments, reprs and order of random.uniform draws as micrograd 0.1.0,
so the same seed gives the same model.
"""
import random
from typing import Any, Collection, Iterable, Union

from micrograd.engine import Value

# An input: Values, or plain numbers (numpy's among them) as the lecture feeds in.
_Input = Union[Value, float]


class Module:

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0

    def parameters(self) -> list[Value]:
        return []


class Neuron(Module):

    def __init__(self, nin: int, nonlin: bool = True) -> None:
        self.w: list[Value] = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b: Value = Value(0)
        self.nonlin = nonlin

    def __call__(self, x: Iterable[_Input]) -> Value:
        act = sum((wi*xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):

    def __init__(self, nin: int, nout: int, **kwargs: bool) -> None:
        self.neurons: list[Neuron] = [Neuron(nin, **kwargs) for _ in range(nout)]

    # One output comes back unwrapped, which no static type can follow: typed as the usual
    # case, a list, or Any (an MLP's last layer of one neuron gives a Value).
    def __call__(self, x: Collection[_Input]) -> Union[list[Value], Any]:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):

    def __init__(self, nin: int, nouts: list[int]) -> None:
        sz = [nin] + nouts
        self.layers: list[Layer] = [Layer(sz[i], sz[i+1], nonlin=i != len(nouts)-1) for i in range(len(nouts))]

    # typed as the usual case, one output (a Value), or Any (several outputs come as a list)
    def __call__(self, x: Collection[_Input]) -> Union[Value, Any]:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"

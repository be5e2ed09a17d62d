"""micrograd.nn (upstream's nn.py) on both engines."""
import json
import random

import pytest

from micrograd.demo import nn_module

from conftest import engine_name, run_upstream


def test_reprs(nn):
    random.seed(0)
    assert repr(nn.Neuron(2)) == "ReLUNeuron(2)"
    assert repr(nn.Neuron(3, nonlin=False)) == "LinearNeuron(3)"
    assert repr(nn.Layer(2, 3)) == "Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)]"
    assert repr(nn.Layer(3, 1, nonlin=False)) == "Layer of [LinearNeuron(3)]"
    assert repr(nn.MLP(2, [2, 1])) == (
        "MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(2)]]")


def test_parameter_counts(nn, engine):
    random.seed(1)
    model = nn.MLP(2, [16, 16, 1])
    params = model.parameters()
    assert len(params) == 337
    assert len(set(params)) == 337          # all distinct (identity hashing)
    assert all(type(p) is engine.Value for p in params)
    assert all(-1.0 <= p.data <= 1.0 for p in params)
    assert len(nn.Neuron(5).parameters()) == 6
    assert len(nn.Layer(4, 3).parameters()) == 15
    assert nn.Module().parameters() == []


def test_neuron_forward(nn):
    random.seed(8)
    n = nn.Neuron(3)
    n.w[0].data, n.w[1].data, n.w[2].data, n.b.data = 0.5, -1.0, 2.0, 0.25
    out = n([1.0, 2.0, 3.0])
    assert out.data == 0.5 - 2.0 + 6.0 + 0.25
    assert out._op == "ReLU"
    neg = n([-1.0, 2.0, -3.0])
    assert neg.data == 0.0
    lin = nn.Neuron(3, nonlin=False)
    lin.w[0].data, lin.w[1].data, lin.w[2].data, lin.b.data = 0.5, -1.0, 2.0, 0.25
    assert lin([-1.0, 2.0, -3.0]).data == -0.5 - 2.0 - 6.0 + 0.25


def test_layer_unwraps_a_lone_output(nn, engine):
    random.seed(3)
    x = [1.0, -2.0, 0.5]
    single = nn.Layer(3, 1)(x)
    assert type(single) is engine.Value
    several = nn.Layer(3, 2)(x)
    assert isinstance(several, list) and len(several) == 2
    assert all(type(v) is engine.Value for v in several)
    out = nn.MLP(3, [4, 1])(x)
    assert type(out) is engine.Value


def test_mlp_forward_matches_hand_computation(nn):
    random.seed(5)
    model = nn.MLP(2, [3, 1])
    x = [0.7, -1.2]
    hidden = []
    for neuron in model.layers[0].neurons:
        act = sum(w.data * xi for w, xi in zip(neuron.w, x)) + neuron.b.data
        hidden.append(max(act, 0.0))
    (last,) = model.layers[1].neurons
    expected = sum(w.data * h for w, h in zip(last.w, hidden)) + last.b.data
    assert model(x).data == pytest.approx(expected, rel=1e-14)


def test_zero_grad(nn):
    random.seed(4)
    model = nn.MLP(3, [4, 4, 1])
    out = model([1.0, 2.0, -1.0])
    (out * out).backward()
    assert any(p.grad != 0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0 for p in model.parameters())
    # data untouched, and the model trains again from zero
    out = model([1.0, 2.0, -1.0])
    out.backward()
    grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    model([1.0, 2.0, -1.0]).backward()
    assert [p.grad for p in model.parameters()] == grads


def test_zero_grad_leaves_float_grads(nn):
    """nn.py's zero_grad assigns the int 0; README: grad is always a float and repr shows
    grad=0.0."""
    random.seed(6)
    model = nn.MLP(2, [2, 1])
    model.zero_grad()
    p = model.parameters()[0]
    assert type(p.grad) is float
    assert repr(p) == f"Value(data={p.data!r}, grad=0.0)"


def test_gradients_match_finite_differences(nn):
    random.seed(11)
    model = nn.MLP(2, [4, 4, 1])
    x = [0.3, -0.8]

    def loss():
        out = model(x)
        return (out - 0.5) ** 2 + sum(p * p for p in model.parameters()) * 1e-3

    model.zero_grad()
    loss().backward()
    h = 1e-6
    for p in model.parameters():
        old = p.data
        p.data = old + h
        up = loss().data
        p.data = old - h
        down = loss().data
        p.data = old
        assert p.grad == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)


def test_one_sgd_step_lowers_the_loss(nn):
    random.seed(2)
    model = nn.MLP(2, [8, 1])
    data = [([0.5, 1.0], 1.0), ([-1.0, 0.2], -1.0), ([0.1, -0.7], 1.0), ([-0.4, -0.4], -1.0)]

    def loss():
        return sum(((model(x) - y) ** 2 for x, y in data)) * (1.0 / len(data))

    first = loss()
    model.zero_grad()
    first.backward()
    for p in model.parameters():
        p.data -= 0.05 * p.grad
    assert loss().data < first.data


UPSTREAM_WEIGHTS = r'''
import json, random
from micrograd.nn import MLP, Neuron, Layer
random.seed({seed})
model = MLP(2, [16, 16, 1])
x = [0.5, -1.25]
out = model(x)
out.backward()
print(json.dumps({{"repr": repr(model), "weights": [p.data for p in model.parameters()],
                   "out": out.data, "grads": [p.grad for p in model.parameters()],
                   "layer": repr(Layer(3, 2)), "neuron": repr(Neuron(4, nonlin=False))}}))
'''


@pytest.mark.parametrize("seed", [1337, 42])
def test_same_seed_same_model_as_upstream(nn, upstream_path, seed):
    theirs = json.loads(run_upstream(upstream_path, UPSTREAM_WEIGHTS.format(seed=seed)))
    random.seed(seed)
    model = nn.MLP(2, [16, 16, 1])
    assert repr(model) == theirs["repr"]
    assert [p.data for p in model.parameters()] == theirs["weights"]   # exactly
    x = [0.5, -1.25]
    out = model(x)
    out.backward()
    assert out.data == pytest.approx(theirs["out"], rel=1e-12)
    for ours, up in zip([p.grad for p in model.parameters()], theirs["grads"]):
        assert ours == pytest.approx(up, rel=1e-12, abs=1e-15)
    assert repr(nn.Layer(3, 2)) == theirs["layer"]
    assert repr(nn.Neuron(4, nonlin=False)) == theirs["neuron"]


def test_models_of_both_engines_coexist(both_engines):
    """nn.py looks Value up as a module global, so one process can hold models of both
    cores side by side; with the same seed they compute the same floats."""
    nn_c = nn_module(engine_name(both_engines.compiled))
    nn_p = nn_module(engine_name(both_engines.twin))
    random.seed(9)
    mc = nn_c.MLP(3, [5, 1])
    random.seed(9)
    mp = nn_p.MLP(3, [5, 1])
    assert all(type(p) is both_engines.compiled.Value for p in mc.parameters())
    assert all(type(p) is both_engines.twin.Value for p in mp.parameters())
    x = [0.1, 0.2, -0.3]
    oc, op = mc(x), mp(x)
    assert oc.data == op.data != 0.0
    oc.backward()
    op.backward()
    assert [p.grad for p in mc.parameters()] == [p.grad for p in mp.parameters()]

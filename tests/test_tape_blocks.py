"""A Tape replays a dense layer's neurons together (core/blocks.pxi): every node's data and
grad stay the floats eager gives, bit for bit and sign of zero included.

The block runs its sums side by side and its activations and tails (the next layer's
FMAs that read them) after all of them; backward adds to each slot in eager's order only
because inputs, weights, biases and the tails' other operands are distinct slots. The
tests that break one of those conditions check that no block is formed and that the
results still equal eager's; the twin runs no blocks, so it keeps them honest about
what eager gives.
"""
import math
import random

import pytest

from micrograd import _engine
from micrograd import demo as _demo

from test_tape import replays_equal_eager


def bits(x):
    return (math.copysign(1.0, x), x) if x == x else "nan"


def layer(V, xs, ws, bs, act="relu"):
    """One dense layer as nn.Neuron writes it: sum(w*x, b), then the activation."""
    return [getattr(sum((w * x for w, x in zip(row, xs)), b), act)() for row, b in zip(ws, bs)]


def params(V, rng, n_in, n_out, scale=1.0, low=None):
    """Weights (a row per neuron) and biases, uniform in [low, scale] (low: -scale)."""
    low = -scale if low is None else low
    return ([[V(rng.uniform(low, scale)) for _ in range(n_in)] for _ in range(n_out)],
            [V(rng.uniform(low, scale)) for _ in range(n_out)])


def mlp_graph(V, seed, sizes, acts, n_samples=3, special=None, low=None):
    """Samples through a stack of layers, their outputs summed: (root, every node but the
    root, the leaves). special: (sample, input, value) put into one input; low: the first
    layer's lowest weight."""
    rng = random.Random(seed)
    layers = [params(V, rng, a, b, low=low if i == 0 else None)
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    nodes, leaves = [], [p for ws, bs in layers for row in ws for p in row] + \
        [b for _, bs in layers for b in bs]
    total = V(0.0)
    for s in range(n_samples):
        h = [V(rng.uniform(-2, 2)) for _ in range(sizes[0])]
        if special and special[0] == s:
            h[special[1]].data = special[2]
        leaves += h
        for (ws, bs), act in zip(layers, acts):
            h = layer(V, h, ws, bs, act)
            nodes += h
        total = total + sum(h)
    return total, nodes, leaves


def replay_and_eager(engine, build, leaf_grad=0.0, forwards=3):
    """[data and grad bits of every node and leaf] after a Tape's replay (forwards, as a
    training loop would, then backward) and after eager backward on a second build.
    All forwards but the last run on other leaf values, so that a replay reading a slot
    before it writes it gets values the record did not leave there (forward writes each
    replay into the other of two buffers)."""
    out = []
    for use_tape in (True, False):
        root, nodes, leaves = build(engine.Value)
        for v in leaves:
            v.grad = leaf_grad
        if use_tape:
            tape = engine.Tape(root)
            data = [v.data for v in leaves]
            for i in range(forwards):
                for v, x in zip(leaves, data):
                    v.data = x * 0.75 + 0.125 if i < forwards - 1 else x
                tape.forward()
            tape.backward()
            list(tape.nodes)                # write every node back: read them all
        else:
            root.backward()
        out.append([(bits(v.data), bits(v.grad)) for v in [root] + nodes + leaves])
    return out


def blocks_of(build):
    return _engine.Tape(build(_engine.Value)[0])._blocks()


def test_an_mlp_step_replays_its_layers_as_blocks():
    """The demo's MLP(2, [16, 16, 1]): per sample a block of 16 two-input neurons whose
    tails are the second layer's first sum, and one of its other 15 neurons whose tails
    are the output neuron's sum."""
    X, y = _demo.moons()
    model = _demo.nn_module(_engine.Value).MLP(2, [16, 16, 1])
    tape = _engine.Tape(_demo.notebook_loss(_engine.Value, model, X, y)[0])
    found = tape._blocks()
    assert len(found) == 200
    assert {b[1:4] for b in found} == {(16, 2, 4), (15, 16, 18)}
    # nn.py creates a neuron's weights one after the other: the second layer's are dense
    # from the second sample on (the first sample's walk numbers each weight as it goes)
    assert all(b[4] for b in found[2:] if b[2] == 16)
    assert all(b[5] for b in found)         # relus, and tails that form the next sum
    # every sample's second layer multiplies one packed copy of its weights
    assert {b[6] for b in found if b[2] == 16} == {True}   # packed
    assert {b[6] for b in found if b[2] == 2} == {False}
    sets = [{b[7] for b in found if b[2] == L} for L in (2, 16)]   # each layer's one set
    assert all(len(x) == 1 and 0 not in x for x in sets) and sets[0] != sets[1]


@pytest.mark.parametrize("form, chain", [("w*a", True), ("a*a", True), ("o*a", True),
                                         ("a*w", False), ("w*a, tanh", False),
                                         ("w*a, two sums", False), ("a0 + w*a", False)])
def test_relus_and_their_tails_replay_as_eager(engine, form, chain):
    """Forward and backward run a block's relus and tails in loops of their own when every
    tail is an FMA adding its activation (as b in acc + a*b) to the tail before, backward
    carrying the tails' grad in a register unless a tail also reads the one before as a;
    other blocks with tails take the general loops. All give eager's values and grads, bit
    for bit."""
    def build(V):
        rng = random.Random(3)
        ws, bs = params(V, rng, 3, 6)
        w2 = [V(rng.uniform(-1, 1)) for _ in range(6)]
        total, nodes, leaves = V(0.0), [], [p for row in ws for p in row] + bs + w2
        for _ in range(3):
            xs = [V(rng.uniform(-2, 2)) for _ in range(3)]
            acts = layer(V, xs, ws, bs, "tanh" if "tanh" in form else "relu")
            terms = [a * a if form == "a*a" else a * w if form == "a*w" else w * a
                     for w, a in zip(w2, acts)]
            if form == "o*a":               # out + out*a: a tail reads the one before
                out = V(0.1)                # twice, as acc and as a factor
                for a in acts:
                    out = out + out * a
            elif "two sums" in form:        # each tail adds to the tail two before
                out = sum(terms[0::2], V(0.1)) + sum(terms[1::2], V(0.2))
            elif form == "a0 + w*a":        # the first tail adds to its own activation,
                out = sum(terms, acts[0])   # which forward has not computed before it
            else:
                out = sum(terms, V(0.1))
            leaves += xs
            nodes += acts + [out]
            total = total + out.relu()
        return total, nodes, leaves
    if engine is _engine:
        found = blocks_of(build)
        assert found and {b[5] for b in found} == {chain}
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


@pytest.mark.parametrize("order", ["created", "reversed", "shuffled"])
def test_dense_and_scattered_weights_replay_as_eager(engine, order):
    """Backward runs a sum over weights in consecutive slots as one vectorised loop, and
    any other sum FMA by FMA: both give eager's grads, bit for bit. The first sample's
    walk numbers the weights as it reaches them; the later samples take them in order."""
    perm = {"created": range(6), "reversed": range(5, -1, -1), "shuffled": (3, 0, 5, 1, 4, 2)}

    def build(V):
        rng = random.Random(7)
        ws, bs = params(V, rng, 6, 5)
        leaves = [p for row in ws for p in row] + bs
        total, nodes = V(0.0), []
        for s in range(4):
            xs = [V(rng.uniform(-2, 2)) for _ in range(6)]
            h0 = [xi.tanh() for xi in xs]   # op nodes as inputs: only weights are leaves
            order_s = range(6) if s == 0 else perm[order]
            h = layer(V, [h0[i] for i in order_s], [[row[i] for i in order_s] for row in ws],
                      bs, "relu")
            leaves += xs
            nodes += h0 + h
            total = total + sum(h)
        return total, nodes, leaves
    if engine is _engine:
        dense = [b[4] for b in blocks_of(build)]
        assert len(dense) == 4 and dense[0]
        assert all(dense[1:]) == (order == "created") and any(dense[1:]) == (order == "created")
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


@pytest.mark.parametrize("sizes, acts", [
    ([2, 16, 16, 1], ["relu", "relu", "relu"]),
    ([3, 5, 4, 2], ["tanh", "relu", "sigmoid"]),
    ([4, 2, 3], ["exp", "tanh"]),
    ([7, 9, 1], ["relu", "tanh"]),
    ([3, 24, 9, 1], ["relu", "relu", "relu"]),     # 24 narrow sums; one packed group of 8
    ([5, 19, 2], ["relu", "relu"]),                 # groups of four, the last overlapping
    ([3, 6, 20, 1], ["relu", "relu", "relu"]),      # packed: two groups at once, then one
])
@pytest.mark.parametrize("seed", range(3))
def test_layers_replay_as_eager(engine, sizes, acts, seed):
    build = lambda V: mlp_graph(V, seed, sizes, acts)   # noqa: E731
    if engine is _engine:
        assert blocks_of(build)
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


@pytest.mark.parametrize("leaf_grad", [0.0, -0.0, 2.5])
def test_dead_neurons_in_a_block_keep_eagers_signed_zeros(engine, leaf_grad):
    """Negative first-layer weights kill most relus: their sums are skipped, as zero-grad
    runs are, unless a leaf's grad is -0.0."""
    build = lambda V: mlp_graph(V, 4, [3, 8, 8, 1], ["relu"] * 3, low=-3.0)  # noqa: E731
    ours, eager = replay_and_eager(engine, build, leaf_grad)
    assert ours == eager


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, 5e-324, -0.0])
@pytest.mark.parametrize("where", [0, 2])
def test_an_inf_or_nan_input_gives_eagers_grads(engine, value, where):
    """inf * 0 is nan: a dead neuron whose sum is not finite is never skipped."""
    build = lambda V: mlp_graph(V, 2, [3, 6, 5, 1], ["relu"] * 3, special=(1, where, value))  # noqa: E731
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


def hidden_nonfinite(where, n):
    """A layer of n relu neurons (a block) whose tails are the next neuron's sum, under a
    relu whose grad is 0 (backward may skip the run from there down), where only the block
    has a value that is not finite: where="top", the sums are -inf (an inf input, negative
    weights) under the relus; where="tail", the next neuron's sum turns -inf (a weight of
    -inf), under its relu. In eager, the zero grad times an inf factor is nan in some
    grads."""
    def build(V):
        top = where == "top"
        x = [V(math.inf if top else 1.0), V(0.5)]
        ws = [[V(-0.5 - 0.1 * j if top else 0.5 + 0.1 * j), V(0.3 * j - 0.4)] for j in range(n)]
        bs = [V(0.1 * j) for j in range(n)]
        acts = layer(V, x, ws, bs)
        w2 = [V(0.2 * j - 0.3) for j in range(n)]
        if not top:
            w2[1] = V(-math.inf)
        out = sum((w * a for w, a in zip(w2, acts)), V(-1.0 if top else 0.5))
        root = out.relu() * 0.0 + x[1] * 2.0  # the relu's grad is 0: backward may skip
        return root, acts + [out], x + [p for row in ws for p in row] + bs + w2
    return build


@pytest.mark.parametrize("where", ["top", "tail"])
@pytest.mark.parametrize("forwards", [0, 1])
@pytest.mark.parametrize("n", [4, 3])       # sums four and two side by side
def test_an_inf_hidden_inside_a_block_keeps_eagers_nans(engine, where, forwards, n):
    """Forward notes whether every output is finite, so that backward need not check the
    runs it skips: a sum's output answers for its partial sums (and for its activation:
    exp and log raise rather than overflow), each tail for itself. With no forward, the
    recorded values are checked."""
    build = hidden_nonfinite(where, n)
    if engine is _engine:
        assert [b[1:4] for b in blocks_of(build)] == [(n, 2, 4)]
    ours, eager = replay_and_eager(engine, build, forwards=forwards)
    assert ours == eager
    assert "nan" in [g for _, g in eager]


def shared_slots(kind):
    """A layer of 4 neurons over 5 inputs where two roles share a node: a build for
    replay_and_eager. Backward's order would change for the shared node in a block."""
    def build(V):
        rng = random.Random(3)
        xs = [V(rng.uniform(-2, 2)) for _ in range(5)]
        ws, bs = params(V, rng, 5, 4)
        if kind == "weight is an input":
            ws[2][1] = xs[3]
        elif kind == "bias is an input":
            bs[1] = xs[0]
        elif kind == "bias is a weight":
            bs[3] = ws[0][2]
        elif kind == "input twice":
            xs[4] = xs[1]
        elif kind == "tail reads a weight":
            pass
        acts = layer(V, xs, ws, bs, "tanh")
        if kind == "tail reads a weight":     # the next sum's weights include a weight
            top = sum((w * a for w, a in zip([ws[0][0], V(0.3), V(-0.7), V(1.1)], acts)), V(0.2))
        else:
            top = sum((V(0.1 * i - 0.2) * a for i, a in enumerate(acts)), V(0.2))
        root = top.tanh() * V(1.7) + top
        return root, acts + [top], xs + [p for row in ws for p in row] + bs
    return build


@pytest.mark.parametrize("kind", ["weight is an input", "bias is an input",
                                  "bias is a weight", "input twice", "tail reads a weight"])
def test_a_node_in_two_roles_keeps_its_neurons_out_of_blocks(engine, kind):
    build = shared_slots(kind)
    if engine is _engine:                   # the same layer, no node shared: one block
        assert [b[1] for b in blocks_of(shared_slots("none"))] == [4]
        assert [b[1] for b in blocks_of(build)] in ([], [2], [3])
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


def test_a_layer_read_after_it_is_done_is_a_block_without_tails():
    """Activations gathered first and added up after: the block's stride is L + 1."""
    def build(V):
        rng = random.Random(1)
        xs = [V(rng.uniform(-1, 1)) for _ in range(6)]
        ws, bs = params(V, rng, 6, 5)
        acts = layer(V, xs, ws, bs, "relu")
        root = acts[-1]
        for a in reversed(acts[:-1]):       # a0 + (a1 + (...)): the walk reaches every
            root = a + root                 # activation before any ADD
        return root, acts, xs + [p for row in ws for p in row] + bs
    assert [b[1:4] for b in blocks_of(build)] == [(5, 6, 7)]
    ours, eager = replay_and_eager(_engine, build)
    assert ours == eager


def test_neurons_wider_than_block_max_replay_one_at_a_time(engine):
    def build(V):
        return mlp_graph(V, 6, [1030, 3, 3], ["relu", "relu"], n_samples=1)
    if engine is _engine:
        assert [b[2] for b in blocks_of(build)] == [3]      # the second layer only
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


def held_partials(V):
    """A layer whose sums are written out term by term, the user holding each neuron's
    sum after two terms (inside the block)."""
    rng = random.Random(2)
    xs = [V(rng.uniform(-1, 1)) for _ in range(4)]
    ws, bs = params(V, rng, 4, 3)
    held, acts = [], []
    for row, b in zip(ws, bs):
        s = b
        for i, (w, x) in enumerate(zip(row, xs)):
            s = s + w * x
            if i == 1:
                held.append(s)
        acts.append(s.relu())
    return sum(acts), held, xs + [p for row in ws for p in row] + bs


def test_a_held_partial_sum_gets_its_replayed_data_and_grad(engine):
    if engine is _engine:
        assert blocks_of(held_partials)
    ours, eager = replay_and_eager(engine, held_partials)
    assert ours == eager


def held_terms(V, hold, scale=1.0):
    """held_partials' layer, holding each neuron's sum after two terms, or its second
    product (a MUL fused into that partial sum's FMA), or both, with every leaf's data
    times scale."""
    rng = random.Random(2)
    xs = [V(scale * rng.uniform(-1, 1)) for _ in range(4)]
    ws, bs = params(V, rng, 4, 3)
    for p in [p for row in ws for p in row] + bs:
        p.data *= scale
    held, acts = [], []
    for row, b in zip(ws, bs):
        s = b
        for i, (w, x) in enumerate(zip(row, xs)):
            prod = w * x
            s = s + prod
            if i == 1:
                held += [s, prod] if hold == "both" else [s] if hold == "sums" else [prod]
        acts.append(s.relu())
    return sum(acts), held, xs + [p for row in ws for p in row] + bs


@pytest.mark.parametrize("hold", ["sums", "products", "both"])
def test_held_partial_sums_and_products_are_current_without_observing(engine, hold):
    """Replays leave a block's partial sums and their grads to be computed when read; the
    ones the user holds (and the products fused into them) are written back at once."""
    root, held, leaves = held_terms(engine.Value, hold)
    tape = engine.Tape(root)
    if engine is _engine:
        assert tape._blocks()
    for v in leaves:
        v.data *= 1.5
    for _ in range(2):
        for v in leaves:
            v.grad = 0.0
        tape.forward()
        tape.backward()
    got = [(bits(v.data), bits(v.grad)) for v in held]
    root, held, _ = held_terms(engine.Value, hold, 1.5)
    root.backward()
    assert got == [(bits(v.data), bits(v.grad)) for v in held]
    assert any(v.grad != 0.0 for v in held)


def random_net(V, rng):
    """A random stack of small layers, some of whose nodes play two roles, over random
    (sometimes special) inputs, for the fuzz below."""
    sizes = [rng.randint(1, 5) for _ in range(rng.randint(2, 4))]
    acts = [rng.choice(["relu", "tanh", "sigmoid", "relu"]) for _ in sizes[1:]]
    layers = [params(V, rng, a, b, scale=rng.choice([0.5, 3.0])) for a, b in zip(sizes, sizes[1:])]
    leaves = [p for ws, _ in layers for row in ws for p in row] + [b for _, bs in layers for b in bs]
    nodes = []
    total = V(0.0)
    for _ in range(rng.randint(1, 3)):
        h = [V(rng.choice([rng.uniform(-2, 2), 0.0, -0.0, math.inf, math.nan]) if rng.random() < 0.1
               else rng.uniform(-2, 2)) for _ in range(sizes[0])]
        leaves += h
        for (ws, bs), act in zip(layers, acts):
            if rng.random() < 0.15 and h:   # a node in two roles
                ws = [list(row) for row in ws]
                ws[rng.randrange(len(ws))][rng.randrange(len(h))] = rng.choice(h + leaves[:3])
            h = layer(V, h, ws, bs, act)
            nodes += h
        total = total + sum(h, V(rng.choice([0.0, -0.0])))
    return total, nodes, leaves


@pytest.mark.parametrize("seed", range(40))
def test_fuzz_random_layer_stacks_replay_as_eager(engine, seed):
    build = lambda V: random_net(V, random.Random(seed))    # noqa: E731
    for leaf_grad in (0.0, -0.0):
        ours, eager = replay_and_eager(engine, build, leaf_grad)
        assert ours == eager


def mlp_over_samples(V, ps, n):
    """About n nodes: samples through MLP(2, [16, 16, 1]) whose 337 parameters are ps."""
    it = iter(ps)
    layers = [([[next(it) for _ in range(a)] for _ in range(b)], [next(it) for _ in range(b)])
              for a, b in ((2, 16), (16, 16), (16, 1))]
    total = V(0.0)
    for s in range(n // 660):
        h = [V(math.sin(s)), V(math.cos(3 * s))]
        for ws, bs in layers:
            h = layer(V, h, ws, bs)
        total = total + h[0]
    return total


def test_blocks_of_a_tape_bigger_than_the_caches_replay_as_eager():
    """Over PREFETCH_FROM slots forward and backward prefetch, blocks or not."""
    V = _engine.Value
    rng = random.Random(8)
    ps = [V(rng.uniform(-1, 1)) for _ in range(337)]
    tape = _engine.Tape(mlp_over_samples(V, ps, 150_000))
    assert len(tape) > 1 << 17 and len(tape._blocks()) > 400
    replays_equal_eager(mlp_over_samples, ps, tape,
                        [[rng.uniform(-1, 1) for _ in ps] for trial in range(2)])


def reused_partials(V):
    """A layer whose second neuron's sum after two terms is also read elsewhere: its grad
    is then more than its sum's (the block must not take it for granted)."""
    rng = random.Random(6)
    xs = [V(rng.uniform(-1, 1)) for _ in range(4)]
    ws, bs = params(V, rng, 4, 4)
    acts, partial = [], None
    for j, (row, b) in enumerate(zip(ws, bs)):
        s = b
        for i, (w, x) in enumerate(zip(row, xs)):
            s = s + w * x
            if i == 1 and j == 1:
                partial = s
        acts.append(s.tanh())
    root = sum(acts) + partial * V(3.0)
    return root, acts + [partial], xs + [p for row in ws for p in row] + bs


def test_a_partial_sum_read_elsewhere_keeps_its_neuron_out_of_blocks(engine):
    if engine is _engine:
        assert [b[1] for b in blocks_of(reused_partials)] == [2]    # neurons 2 and 3
    ours, eager = replay_and_eager(engine, reused_partials)
    assert ours == eager


def test_packed_weights_follow_the_leaves(engine):
    """A layer's weights are packed on every forward, not when recorded: a replay after
    the leaves changed gives what eager gives on a graph built from the changed values."""
    change = lambda x: x * 0.5 - 0.25   # noqa: E731
    made = []

    def V(x):
        made.append(engine.Value(x))
        return made[-1]
    root, nodes, leaves = mlp_graph(V, 5, [3, 6, 20, 1], ["relu"] * 3)
    tape = engine.Tape(root)
    assert engine is not _engine or {b[6] for b in tape._blocks() if b[2] == 6} == {1}
    for v in made:
        v.data = change(v.data)
    tape.forward()
    tape.backward()
    ours = [(bits(v.data), bits(v.grad)) for v in [root] + list(tape.nodes)]
    root, _, _ = mlp_graph(lambda x: engine.Value(change(x)), 5, [3, 6, 20, 1], ["relu"] * 3)
    root.backward()
    assert ours == [(bits(v.data), bits(v.grad)) for v in [root] + list(engine.Tape(root).nodes)]


@pytest.mark.parametrize("own", ["nothing", "biases", "output weights", "a weight"])
def test_blocks_share_a_set_only_with_their_biases_and_tails_weights(engine, own):
    """The blocks of a set read their weights, biases and relu chain's tails' weights from
    the set's first block: samples over one layer's weights but with biases, an output
    neuron's weights or one weight (not the first of its neuron) of their own are not in
    one set, and replay as eager."""
    def build(V):
        rng = random.Random(8)
        ws1, bs1 = params(V, rng, 2, 6)
        ws, bs = params(V, rng, 6, 12)
        w_out = [V(rng.uniform(-1, 1)) for _ in range(12)]
        total = V(0.0)
        leaves = [w for row in ws1 + ws for w in row] + bs1 + bs + w_out
        for s in range(3):
            x = [V(rng.uniform(-2, 2)) for _ in range(2)]
            b = [V(rng.uniform(-1, 1)) for _ in range(12)] if own == "biases" else bs
            wo = [V(rng.uniform(-1, 1)) for _ in range(12)] if own == "output weights" else w_out
            w = [row[:] for row in ws]
            if own == "a weight":
                w[5][3] = V(rng.uniform(-1, 1))
                leaves.append(w[5][3])
            h = layer(V, layer(V, x, ws1, bs1), w, b)
            total = total + sum((w * a for w, a in zip(wo, h)), V(0.5)).relu()
            leaves += x + (b if b is not bs else []) + (wo if wo is not w_out else [])
        return total, [], leaves
    if engine is _engine:
        blocks = [b for b in blocks_of(build) if b[2] == 6]
        assert len(blocks) == 3 and all(b[5] for b in blocks)       # relu chains
        assert {b[6] for b in blocks} == ({True} if own == "nothing" else {False})  # packed
        assert len({b[7] for b in blocks}) == 1 and (blocks[0][7] > 0) == (own == "nothing")
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


@pytest.mark.parametrize("kind", ["weights are op nodes", "one sample"])
def test_weights_not_packed_replay_as_eager(engine, kind):
    """Weights computed by the graph (forward lays packs out before it runs anything), or
    used by one block only (not worth the copy), are read where they are."""
    def build(V):
        rng = random.Random(6)
        ws, bs = params(V, rng, 6, 12)
        if kind == "weights are op nodes":
            ws = [[w * 1.5 for w in row] for row in ws]
        total = V(0.0)
        for s in range(1 if kind == "one sample" else 3):
            h = layer(V, [V(rng.uniform(-2, 2)) for _ in range(6)], ws, bs)
            total = total + sum(h)
        leaves = [w for row in ws for w in row if not w._prev] + bs
        return total, [], leaves
    if engine is _engine:
        assert blocks_of(build) and {b[6] for b in blocks_of(build)} == {0}
    ours, eager = replay_and_eager(engine, build)
    assert ours == eager


@pytest.mark.parametrize("n, dead", [(9, 4), (17, 12)])     # one group of eight; two
def test_an_inf_in_packed_sums_keeps_eagers_nans(engine, n, dead):
    """A weight of -inf in a packed layer makes a sum -inf, hidden by its relu, under a
    relu whose grad is 0: the packed sums must report it, or backward would skip the run
    where eager gets 0 * inf = nan."""
    def build(V):
        ws1 = [[V(0.3 + 0.05 * j), V(0.2)] for j in range(6)]
        bs1 = [V(0.1) for _ in range(6)]
        ws2 = [[V(0.1 * (i - j)) for i in range(6)] for j in range(n)]
        ws2[dead][0] = V(-math.inf)
        bs2 = [V(0.1 * j) for j in range(n)]
        total, nodes, leaves = V(0.0), [], [w for row in ws1 + ws2 for w in row] + bs1 + bs2
        for s in range(3):
            x = [V(0.5 + 0.1 * s), V(0.25)]
            leaves += x
            h = layer(V, layer(V, x, ws1, bs1), ws2, bs2)
            nodes += h
            total = total + sum(h)
        return total.relu() * 0.0 + x[1] * 2.0, nodes, leaves
    if engine is _engine:
        assert [b[6] for b in blocks_of(build) if b[2] == 6] == [1, 1, 1]
    ours, eager = replay_and_eager(engine, build, forwards=1)
    assert ours == eager
    assert any(g == "nan" for _, g in eager)    # the nans are there to keep

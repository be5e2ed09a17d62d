"""Deep graphs: building, backward and freeing need no recursion (upstream's recursive
build_topo fails at ~1000 levels) and memory stays bounded."""
import gc
import math
import subprocess
import sys

import pytest

from conftest import subprocess_env
from micrograd import _engine


def rss():
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pytest.skip("no /proc/self/status: cannot measure resident memory")


def sizes(big, small):
    """The heavy size (slow suite) and a small one checking the same in the fast suite."""
    return pytest.mark.parametrize("n", [
        pytest.param(big, marks=pytest.mark.slow, id=f"{big:_}"),
        pytest.param(small, id=f"{small:_}")])


@pytest.mark.memory
@sizes(10_000_000, 1_000_000)
def test_product_chain_compiled(n):
    V = _engine.Value
    gc.collect()
    before = rss()
    x = V(1.0)
    y = V(1.0000001)
    z = x
    for _ in range(n):
        z = z * y
    built = rss()
    z.backward()
    peak = rss()
    # z = x * y**N
    expected = math.exp(n * math.log1p(1e-7))
    assert z.data == pytest.approx(expected, rel=1e-6)
    assert x.grad == pytest.approx(expected, rel=1e-6)
    assert y.grad == pytest.approx(n * expected / 1.0000001, rel=1e-6)
    assert z.grad == 1.0
    # bounded: the node itself is 56 bytes and the walk a few pointers
    assert (built - before) / n < 120, (built - before) / n
    assert (peak - before) / n < 120, (peak - before) / n
    del z
    after = rss()
    assert x.data == 1.0 and y.data == 1.0000001      # the leaves survive the chain
    # most of it went back (what stays is the walk's scratch buffers, kept for reuse)
    assert (after - before) / n < 40, (after - before) / n
    assert after - before < 0.5 * (peak - before)


@sizes(10_000_000, 1_000_000)
def test_sum_chain_compiled(n):
    V = _engine.Value
    x = V(3.0)
    y = V(0.5)
    z = x
    for _ in range(n):
        z = z + y
    assert z.data == 3.0 + 0.5 * n
    z.backward()
    assert x.grad == 1.0
    assert y.grad == float(n)       # exact: a sum of ones
    z.backward()        # again: as upstream, every non-root grad accumulates, so node k
                        # from the top now has grad k + 1 and passes it on
    assert x.grad == n + 1.0
    assert y.grad == n + n * (n + 1) / 2      # exact: integers below 2**53
    del z


@sizes(1_000_000, 100_000)
def test_deep_chain_freed_in_any_order_compiled(n):
    V = _engine.Value
    x = V(1.0)
    z = x
    nodes = []
    for i in range(n):
        z = z * 1.0 if i % 3 else z + x
        if i % (n // 10) == 0:
            nodes.append(z)         # some interior nodes are also held from outside
    z.backward()
    adds = (n - 1) // 3 + 1         # z = x * (1 + the number of `+ x` steps)
    assert x.grad == 1.0 + adds
    del z                           # frees the top; the held interior nodes keep the rest
    # each held node is x plus the `+ x` steps up to it; d(top)/d(node) is 1
    assert [v.data for v in nodes] == [2.0 + i // 3 for i in range(0, n, n // 10)]
    assert all(v.grad == 1.0 for v in nodes)
    while nodes:
        nodes.pop(0)                # free from the bottom up: the chain above is gone
    assert (x.data, x.grad) == (1.0, 1.0 + adds)


# A chain through the side table: hand-built nodes (their children are kept there), a
# subclass's, and lecture-style nodes (a _backward closure, freed by the core's gc
# callback). Freed in a thread with a small C stack, where freeing by recursion dies.
SIDE_TABLE_CHAIN = r"""
import gc, math, sys, threading
from micrograd._engine import Value

class Sub(Value):
    pass

def sin(v):
    out = Value(math.sin(v.data), (v,), "sin")
    def _backward():
        v.grad += math.cos(v.data) * out.grad
    out._backward = _backward
    return out

kind, n = sys.argv[1], int(sys.argv[2])
x = Value(0.5)
z = x
for _ in range(n):
    z = sin(z) if kind == "lecture" else (Sub if kind == "subclass" else Value)(1.0, (z,), "f")
graph = [z]
del z

def free():
    graph.clear()
    gc.collect()

threading.stack_size(256 * 1024)
t = threading.Thread(target=free)
t.start()
t.join()
print(sys.getrefcount(x))
"""


@pytest.mark.parametrize("kind", ["hand-built", "subclass", "lecture"])
def test_deep_chain_through_the_side_table_freed_without_recursion_compiled(kind):
    proc = subprocess.run([sys.executable, "-c", SIDE_TABLE_CHAIN, kind, "30000"],
                          capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert proc.returncode == 0, f"died with {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.split() == ["2"]      # x is held by its name alone: all freed


@sizes(2_000_000, 200_000)
def test_self_multiplied_chain_freed_without_recursion_compiled(n):
    # both operands are the same node: the dying node is its child's last two owners
    V = _engine.Value
    x = V(1.0)
    z = x
    for i in range(n):
        z = z * z
        if i == n - 11:
            near_top = z            # 10 squarings below the top
    z.backward()
    assert z.data == 1.0 and z.grad == 1.0
    assert near_top.grad == 2.0 ** 10       # d(u ** (2 ** 10))/du at u = 1
    assert x.grad == math.inf               # 2 ** n overflows, as with floats
    del z                           # the top 10 nodes go; near_top keeps the rest
    assert near_top.data == 1.0 and len(near_top._prev) == 1
    del near_top
    assert x.data == 1.0


@sizes(1_000_000, 30_000)
def test_long_product_chain(engine, n):
    V = engine.Value
    x = V(2.0)
    y = V(1.0)
    z = x
    for _ in range(n):
        z = z * y
    assert z.data == 2.0
    z.backward()
    assert x.grad == 1.0
    assert y.grad == 2.0 * n
    del z


@sizes(1_000_000, 30_000)
def test_sum_of_many_terms(engine, n):
    V = engine.Value
    terms = [V(float(i % 7)) for i in range(n)]
    total = sum(terms)
    assert total.data == float(sum(i % 7 for i in range(n)))
    total.backward()
    assert all(t.grad == 1.0 for t in terms)
    total.backward()    # accumulates as upstream: the sum node k from the top has k + 1
    assert terms[-1].grad == 2.0
    assert terms[-2].grad == 3.0
    assert terms[0].grad == n + 1.0
    del total, terms


def every_op_chain_on_floats(z, n):
    """test_deep_chain_of_every_op's chain on floats: (value, d value / d input), the
    derivative by the chain rule, step by step."""
    d = 1.0
    for i in range(n):
        k = i % 6
        if k == 0:
            t = math.tanh(z)
            z, d = t + 0.5, d * (1 - t * t)
        elif k == 1:
            s = 1 / (1 + math.exp(-z))
            z, d = s * 2, d * 2 * s * (1 - s)
        elif k == 2:
            z, d = math.log(z * z + 1), d * 2 * z / (z * z + 1)
        elif k == 3:
            r = math.exp(z) ** 0.5
            z, d = r - 1, d * 0.5 * r
        elif k == 4:
            z, d = max(z, 0.0) / 1.5, d * (z > 0) / 1.5
        else:
            p = 2 ** z
            z, d = p - 1, d * p * math.log(2)
    return z, d


@sizes(100_000, 10_000)
def test_deep_chain_of_every_op(engine, n):
    V = engine.Value
    x = V(0.5)
    z = x
    for i in range(n):
        k = i % 6
        if k == 0:
            z = z.tanh() + 0.5
        elif k == 1:
            z = z.sigmoid() * 2
        elif k == 2:
            z = (z * z + 1).log()
        elif k == 3:
            z = z.exp() ** 0.5 - 1
        elif k == 4:
            z = z.relu() / 1.5
        else:
            z = 2 ** z - 1
    z.backward()
    data, grad = every_op_chain_on_floats(0.5, n)
    assert z.data == pytest.approx(data, rel=1e-9)
    assert x.grad == pytest.approx(grad, rel=1e-6, abs=1e-300)
    del z


def test_deep_backward_needs_no_recursion_limit(engine):
    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        V = engine.Value
        x = V(1.0)
        z = x
        for _ in range(50_000):
            z = z + x
        z.backward()
        assert x.grad == 50_001.0
    finally:
        sys.setrecursionlimit(limit)
    del z


@pytest.mark.memory
def test_memory_returns_after_many_training_like_steps_compiled():
    """Build and free a 100k-node graph 30 times: resident memory does not keep growing."""
    V = _engine.Value
    params = [V(0.01 * i) for i in range(100)]

    def step():
        total = V(0.0)
        for _ in range(500):
            for p in params:
                total = total + p * p
        total.backward()
        return total.data

    step()
    gc.collect()
    start = rss()
    for _ in range(30):
        step()
    growth = rss() - start
    assert growth < 16 * 1024 * 1024, growth


def test_node_slots_reused_in_any_order_keep_every_survivor_intact_compiled():
    """Nodes live in 2 MiB chunks whose freed slots are reused and whose empty chunks
    are kept or handed back. Build and drop graphs of many sizes while a sparse, shifting
    set of nodes survives in old chunks: every survivor keeps its data, grad and
    operands, and new graphs built into the reused slots compute correctly."""
    import random
    V = _engine.Value
    rng = random.Random(0)
    keep = {}
    for r in range(40):
        n = rng.choice([10, 1000, 20_000, 60_000, 200_000])
        leaves = [V(float(i)) for i in range(n)]
        total = V(0.0)
        for v in leaves[: min(n, 5000)]:
            total = total + v * 2.0
        total.backward()
        m = min(n, 5000)
        assert total.data == 2.0 * (m * (m - 1) // 2)
        assert all(v.grad == 2.0 for v in leaves[:m])
        for i in rng.sample(range(n), k=min(n, 30)):
            leaves[i].grad = -float(i)
            keep[(r, i)] = leaves[i]
        keep[(r, "total")] = total
        for key in rng.sample(sorted(keep, key=str), k=len(keep) // 3):
            del keep[key]
        del leaves, total, v
    for key, v in keep.items():
        r, i = key
        if i == "total":
            assert v._op == "+" and len(v._prev) == 2
        else:
            assert (v.data, v.grad, v._prev) == (float(i), -float(i), set())


def test_freed_slots_are_reused_lowest_address_first_compiled():
    """A graph built on the slots of one freed in any order lies in memory in creation
    order, as on fresh slots: the walks over it then run through memory in order."""
    import random
    V = _engine.Value
    nodes = [V(float(i)) for i in range(20_000)]
    order = list(range(len(nodes)))
    random.Random(1).shuffle(order)
    for i in order:
        nodes[i] = None
    fresh = [V(float(i)) for i in range(20_000)]
    ids = [id(v) for v in fresh]
    # ascending but where the slots run on into another chunk (a LIFO list: ~10,000 descents)
    assert sum(b < a for a, b in zip(ids, ids[1:])) <= 2


# In a fresh process the first chunk holds nothing but these nodes: which slots come back,
# and in which order, is then the allocator's alone.
SPREAD_REUSE = r"""
import random
from micrograd._engine import Value
nodes = [Value(float(i)) for i in range(30_000)]
gone = random.Random(2).sample(range(30_000), 700)  # over most of the chunk's bitmap words
ids = sorted(id(nodes[i]) for i in gone)
for i in gone:
    nodes[i] = None
print([id(Value(0.0)) for _ in range(3)] == [ids[0]] * 3)   # freed at once: back again
fresh = [Value(0.0) for _ in ids]
print([id(v) for v in fresh] == ids)
"""


def test_freed_slots_spread_over_a_chunk_come_back_in_address_order_compiled():
    proc = subprocess.run([sys.executable, "-c", SPREAD_REUSE], capture_output=True, text=True,
                          timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]


# A training loop rebuilds the same graph each step: a notebook's holds the last step's graph
# while it builds the next, a tidy one drops it first. The nodes span several chunks.
REBUILT_SLOTS = r"""
from micrograd._engine import Value
x = Value(1.0)

def graph():
    nodes = [x]
    for _ in range(50_000):            # 100,000 nodes: three chunks
        nodes.append(nodes[-1] * x + x)
    return tuple(id(v) for v in nodes[1:]), nodes

for holds in (True, False):
    slots, last = [], None
    for step in range(6):
        if not holds:
            last = None
        ids, last = graph()
        slots.append(ids)
    print(holds, len(set(slots)), slots[2:] == slots[:4])
"""


def test_a_rebuilt_graph_takes_the_slots_its_predecessor_had_compiled():
    """Slots come from the first-mapped chunk with room, lowest first: a graph built once
    its predecessor is gone takes that graph's very slots, so a loop's graphs lie at two
    sets of addresses in turn (one if each is dropped before the next is built), which is
    what lets backward() recall its walk (src/core/recall.pxi)."""
    proc = subprocess.run([sys.executable, "-c", REBUILT_SLOTS], capture_output=True, text=True,
                          timeout=300, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "2", "True", "False", "1", "True"]

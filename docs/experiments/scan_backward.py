"""Experiment (not part of the package): eager backward as one newest-first scan over the
node chunks, against the walk, on the demo's first graph. Quoted in benchmarks/RESULTS.md.

The prototype is scan_backward.patch, written against commit 936353f. To repeat:

    git worktree add /tmp/scan 936353f && cd /tmp/scan
    git apply /path/to/docs/experiments/scan_backward.patch
    python setup.py build_ext --inplace
    PYTHONPATH=src python /path/to/docs/experiments/scan_backward.py

It assumes what holds for the first graph of a fresh process (and not in general, which is
why it was not adopted): the graph was bump-allocated in creation order into chunks mapped in
order, so scanning slots from the root downwards meets every node after all its consumers.
Prints how many grads differ from the walk's, and both medians.
"""
import statistics
import time

from micrograd.demo import Demo

demo = Demo("cython")
loss, _, _ = demo.loss()        # the first graph: creation order in fresh chunks


def all_nodes(root):
    seen = {id(root): root}
    stack = [root]
    while stack:
        for child in stack.pop()._prev:
            if id(child) not in seen:
                seen[id(child)] = child
                stack.append(child)
    return list(seen.values())


nodes = all_nodes(loss)


def grads_after(backward):
    for v in nodes:
        v.grad = 0.0
    backward()
    return [v.grad for v in nodes]


walked = grads_after(loss.backward)
scanned = grads_after(loss._scan_backward)
print(f"{len(nodes)} nodes; grads that differ from the walk's: "
      f"{sum(a != b for a, b in zip(walked, scanned))}")

walk_ns, scan_ns = [], []
for _ in range(200):                # alternately, on the same graph (grads just accumulate)
    t0 = time.perf_counter_ns()
    loss.backward()
    t1 = time.perf_counter_ns()
    loss._scan_backward()
    t2 = time.perf_counter_ns()
    walk_ns.append(t1 - t0)
    scan_ns.append(t2 - t1)
print(f"walk + rules: median {statistics.median(walk_ns) / 1e3:.0f} µs")
print(f"scan:         median {statistics.median(scan_ns) / 1e3:.0f} µs")

"""The demo step's peers, each in a worker process of its own (benchmarks/workers.py): PyTorch
on nn.py itself; and, on nn.py's arithmetic written as a function of the parameters, plain
Python floats (the floor of an unchanged nn.py), HIPS autograd, JAX eager and jax.jit.

Every peer runs the notebook's data, model (the same random.uniform draws), loss and SGD
schedule, so its losses are compared with the compiled engine's in the demo table."""
import gc
import resource
import statistics
import time

from fmt import fmt_ns, fmt_x, med, table

clock = time.process_time_ns
SIZES = (2, 16, 16, 1)                  # MLP(2, [16, 16, 1])
WARMUP_SAMPLES = 2                      # the slow peers warm up on a 2-sample demo
SLOW = ("autograd", "jax", "jax-jit")   # fewer rounds: a JAX eager step takes over a minute, and
                                        # jax.jit compiles for ~10 s in every process
PEERS = {   # engine: (module it needs, how to install it)
    "torch": ("torch", "pip install torch"), "autograd": ("autograd", "pip install autograd"),
    "jax": ("jax", "pip install jax jaxlib"), "jax-jit": ("jax", "pip install jax jaxlib")}


def absent():
    """{engine: reason} for the peers whose package does not import here."""
    import importlib.util
    return {e: f"{mod} is not installed (`{how}`)" for e, (mod, how) in PEERS.items()
            if importlib.util.find_spec(mod) is None}


def versions():
    """{package: version} of the peers that import (they run in the workers)."""
    import importlib.metadata
    out = {}
    for mod in ("torch", "autograd", "jax", "jaxlib"):
        try:
            out[mod] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def torch_demo(demo):
    """The demo on PyTorch scalar autograd: nn.py's MLP with 0-d float64 tensors for Values,
    drawn by the same random.uniform calls, so the model and losses are the others'."""
    import torch
    torch.set_num_threads(1)   # 0-d tensors never use intra-op threads; keep it explicit

    def parameter(x):
        return torch.tensor(x, dtype=torch.float64, requires_grad=True)

    class MLP(demo.nn_module(parameter).MLP):
        def zero_grad(self):
            for p in self.parameters():
                p.grad = None      # torch's idiom (optimizer.zero_grad(set_to_none=True))

    class TorchDemo(demo.Demo):
        @staticmethod
        def backend(engine):
            return (lambda x: torch.tensor(x, dtype=torch.float64)), None, MLP

        def update(self, k, steps=100, tape=False):
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(p.grad, alpha=-demo.learning_rate(k, steps))

    return TorchDemo("torch"), {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------
# nn.py's arithmetic as a function of the parameters
# ---------------------------------------------------------------------------------
def mlp_scores(params, X, relu, Value=float):
    """nn.py's MLP(2, [16, 16, 1]) on every row of X, params in nn.py's parameters() order
    (per layer, per neuron: w..., b): Neuron's sum from the bias, ReLU on hidden layers."""
    params = list(params)    # one node per parameter, as nn.py's Values (not an index per use)
    layers, k = [], 0
    for nin, nout in zip(SIZES, SIZES[1:]):
        layers.append([(params[k + j * (nin + 1):k + j * (nin + 1) + nin], params[k + j * (nin + 1) + nin])
                       for j in range(nout)])
        k += nout * (nin + 1)
    last, scores = len(layers) - 1, []
    for xrow in X:
        x = list(map(Value, xrow))
        for li, layer in enumerate(layers):
            out = []
            for w, b in layer:
                act = sum((wi*xi for wi, xi in zip(w, x)), b)
                out.append(relu(act) if li != last else act)
            x = out
        scores.append(x[0])
    return params, scores


def nn_loss(params, X, y, relu, Value=float):
    """The notebook's loss() on mlp_scores: (total_loss, scores), the same sums in the same order."""
    params, scores = mlp_scores(params, X, relu, Value)
    losses = [relu(1 + -yi*scorei) for yi, scorei in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * sum((p*p for p in params))
    return data_loss + reg_loss, scores


def float_relu(a):
    return 0 if a < 0 else a           # upstream's Value.relu on the data


def accuracy(y, scores):
    return sum((yi > 0) == (s > 0) for yi, s in zip(y, scores)) / len(scores)


# ---------------------------------------------------------------------------------
# The workers' side: each returns {phase: [ns per timed step]}, [losses], extra facts
# ---------------------------------------------------------------------------------
def timed(steps, warmup, one_step):
    """Run one_step(k) warmup + steps times; one_step returns (loss, {phase: ns})."""
    times, losses = {ph: [] for ph in ("forward", "backward", "update", "free", "step")}, []
    for i in range(warmup + steps):
        loss, ns = one_step(i % 100)
        losses.append(loss)
        if i >= warmup:
            for ph in times:
                times[ph].append(ns.get(ph))
    return times, losses


def floats(demo_mod, steps, warmup, n_free):
    """The floor: the eager forward (loss and accuracy) on plain floats; and the cost of
    dropping n_free fresh Python floats, the floor of freeing that many nodes."""
    d = demo_mod.Demo("python")
    params = [p.data for p in d.model.parameters()]

    def one_step(k):
        t0 = clock()
        total, scores = nn_loss(params, d.X, d.y, float_relu)
        accuracy(d.y, scores)
        t1 = clock()
        return float(total), {"forward": t1 - t0, "step": t1 - t0}

    times, losses = timed(steps, warmup, one_step)
    losses = losses[:1]      # no update: only the first loss is the demo's
    frees = []
    for _ in range(max(3, steps)):
        fresh = [i + 0.5 for i in range(n_free)]
        t0 = clock()
        del fresh
        frees.append(clock() - t0)
    return times, losses, {"free_floor_ns": statistics.median(frees), "free_floor_n": n_free}


def vjp_peer(demo_mod, steps, warmup, name):
    """The demo step on HIPS autograd or JAX eager: the forward traced by the library's vjp
    (the graph), its backward, then the notebook's update p - lr*g per parameter."""
    if name == "autograd":
        import autograd
        import autograd.numpy as anp
        from autograd.tracer import getval

        def vjp(d, params):
            box = []

            def f(ps):
                total, scores = nn_loss(ps, d.X, d.y, relu)
                box.append(scores)
                return total
            back, loss = autograd.make_vjp(f)(params)
            return loss, back, [getval(s) for s in box[0]]
        relu, one, lib = (lambda a: anp.maximum(a, 0.0)), 1.0, {"autograd": versions()["autograd"]}
        as_param = float
    else:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_enable_x64", True)

        def vjp(d, params):
            return jax.vjp(lambda ps: nn_loss(ps, d.X, d.y, relu), params, has_aux=True)
        relu, one, lib = (lambda a: jnp.maximum(a, 0.0)), jnp.asarray(1.0), {"jax": jax.__version__}
        as_param = jnp.asarray

    small = demo_mod.Demo("python", n_samples=WARMUP_SAMPLES)     # warms the op caches
    for _ in range(warmup):
        vjp(small, [as_param(p.data) for p in small.model.parameters()])[1](one)
    d = demo_mod.Demo("python")
    state = {"params": [as_param(p.data) for p in d.model.parameters()]}

    def one_step(k):
        t0 = clock()
        loss, back, scores = vjp(d, state["params"])
        accuracy(d.y, [float(s) for s in scores])
        t1 = clock()
        grads = back(one)
        if name == "jax":
            grads = grads[0]
        t2 = clock()
        lr = demo_mod.learning_rate(k)
        state["params"] = [p - lr * g for p, g in zip(state["params"], grads)]
        t3 = clock()
        del back, grads
        t4 = clock()
        return float(loss), {"forward": t1 - t0, "backward": t2 - t1, "update": t3 - t2,
                             "free": t4 - t3, "step": t4 - t0}

    times, losses = timed(steps, 0, one_step)
    return times, losses, lib


def jax_jit(demo_mod, steps, warmup):
    """jax.jit per sample: value_and_grad of one sample's hinge loss (the MLP on it, ~650
    scalar ops) compiled once, called for each of the 100 samples per step; the mean, the
    L2 term and the update as three more compiled functions. The same loss and update as
    the notebook, summed in XLA's order (the losses agree to rounding, not bit for bit)."""
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)

    def relu(a):
        return jnp.maximum(a, 0.0)

    def sample_loss(pvec, x0, x1, yi):
        _, (score,) = mlp_scores([pvec[i] for i in range(pvec.shape[0])], [(x0, x1)], relu, lambda v: v)
        return relu(1 + -yi*score), score

    def reg_loss(pvec):
        return 1e-4 * jnp.sum(pvec * pvec)

    per_sample = jax.jit(jax.value_and_grad(sample_loss, has_aux=True))
    reg = jax.jit(jax.value_and_grad(reg_loss))
    combine = jax.jit(lambda losses, grads: (jnp.sum(losses) * (1.0 / losses.shape[0]),
                                             jnp.sum(grads, axis=0) * (1.0 / losses.shape[0])))
    update = jax.jit(lambda pvec, g, rg, lr: pvec - lr * (g + rg))
    d = demo_mod.Demo("python")
    X, y = [tuple(map(float, r)) for r in d.X], [float(v) for v in d.y]
    pvec = jnp.asarray([p.data for p in d.model.parameters()])
    t0 = clock()
    per_sample(pvec, *X[0], y[0])[0][0].block_until_ready()
    t1 = clock()
    reg(pvec)
    combine(jnp.zeros(len(y)), jnp.zeros((len(y), pvec.shape[0])))
    update(pvec, pvec, pvec, 1.0).block_until_ready()
    t2 = clock()
    state = {"pvec": pvec}

    def one_step(k):
        t0 = clock()
        outs = [per_sample(state["pvec"], x0, x1, yi) for (x0, x1), yi in zip(X, y)]
        data_loss, g = combine(jnp.stack([o[0][0] for o in outs]), jnp.stack([o[1] for o in outs]))
        rl, rg = reg(state["pvec"])
        total = float(data_loss + rl)
        accuracy(y, [float(o[0][1]) for o in outs])
        t1 = clock()
        state["pvec"] = update(state["pvec"], g, rg, demo_mod.learning_rate(k)).block_until_ready()
        t2 = clock()
        return total, {"backward": t1 - t0, "update": t2 - t1, "step": t2 - t0}

    times, losses = timed(steps, warmup, one_step)
    return times, losses, {"jax": jax.__version__, "compile_ns": t1 - t0, "compile_rest_ns": t2 - t1}


def jax_jit_whole(demo_mod, n_samples, mem_gib):
    """Trace and compile jax.jit of the whole step's value_and_grad at n_samples, under an
    address-space cap of mem_gib: {compile_ns} (the caller's timeout bounds the time)."""
    cap = int(mem_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    d = demo_mod.Demo("python", n_samples=n_samples)
    X = [tuple(map(float, r)) for r in d.X]
    y = [float(v) for v in d.y]

    def loss(ps):
        return nn_loss(ps, X, y, lambda a: jnp.maximum(a, 0.0), lambda v: v)[0]

    params = [jnp.asarray(p.data) for p in d.model.parameters()]
    gc.collect()
    t0 = clock()
    step = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
    t1 = clock()
    step(params)[0].block_until_ready()
    t2 = clock()
    step(params)[0].block_until_ready()
    return {"n_samples": n_samples, "compile_ns": t1 - t0, "step_ns": clock() - t2, "mem_gib": mem_gib,
            "jax": jax.__version__}


# ---------------------------------------------------------------------------------
# run.py's side: the whole-step jax.jit, and the Markdown of the peers' notes and floors
# ---------------------------------------------------------------------------------
JIT_TIMEOUT, JIT_MEM_GIB = 180, 4.0


def measure_jit_whole(worker, sample_counts, log):
    """jax.jit of the whole step at each sample count, in a worker capped at JIT_TIMEOUT s
    (wall clock) and JIT_MEM_GIB of address space; a count that fails stops the larger ones."""
    import subprocess
    out = []
    for n in sample_counts:
        try:
            res = worker("jit-whole", n, "--mem-gib", JIT_MEM_GIB, timeout=JIT_TIMEOUT)
            log(f"  jax.jit whole step, {n} samples: compiled in {fmt_ns(res['compile_ns'])}")
        except subprocess.TimeoutExpired:
            res = {"n_samples": n, "error": f"did not compile within {JIT_TIMEOUT} s"}
        except RuntimeError as exc:
            res = {"n_samples": n, "error": f"failed under a {JIT_MEM_GIB:g} GiB cap: {str(exc)[-160:]}"}
        out.append(res)
        if "error" in res:
            log(f"  jax.jit whole step, {n} samples: {res['error']}")
            break
    return out


def md_notes(R):
    """The demo table's notes on the peers that are not nn.py on Values."""
    notes = []
    if "floats" in R["demo"]:
        notes.append("The plain-floats row is a floor, not a training step: nn.py's forward and the "
                     "notebook's loss and accuracy as Python float arithmetic (no graph, no backward, no "
                     "update); its losses column compares its one loss.")
    jit = [r for r in R["demo"].get("jax-jit", []) if r]
    if jit:
        notes.append(f"jax.jit row: the per-sample loss and gradient compiled once "
                     f"({fmt_ns(med([r['compile_ns'] for r in jit]))} of CPU to trace and compile), then "
                     "called for each of the 100 samples per step; forward and backward are one call "
                     "(shown as backward), the mean, L2 term and update are three more compiled calls.")
    if R.get("jit_whole"):
        parts = [f"{r['n_samples']} samples: " + (r["error"] if "error" in r else
                 f"compiled in {fmt_ns(r['compile_ns'])} of CPU, then {fmt_ns(r['step_ns'])} per step")
                 for r in R["jit_whole"]]
        failed = any("error" in r for r in R["jit_whole"])
        notes.append("jax.jit of the whole step (value_and_grad of the full-batch loss, traced as "
                     "scalar ops), each sample count in a fresh worker: " + "; ".join(parts) + "."
                     + (" Larger counts were not tried." if failed else ""))
    return "".join(f"\n{n}\n" for n in notes)


def md_floors(R, m, paired_ratio):
    """The compiled eager step part by part against the floor of each part."""
    c, fl = m.get("cython"), [r for r in R["demo"].get("floats", []) if r]
    if not c or not fl:
        return "Not measured (needs the compiled engine's and the plain-floats rows).\n"
    nodes = next((r["tape_nodes"] for r in R["demo"].get("tape", []) if r), None)
    rows = [["forward", fmt_ns(c["forward"]), fmt_ns(m["floats"]["forward"]),
             fmt_x(paired_ratio(R, "cython", "floats", "forward")),
             "nn.py's forward on plain floats (a float per op, no node)"]]
    sizes = sorted(R["node_pass"], key=lambda n: abs(int(n) - (nodes or 0)))
    if nodes and sizes:
        walk = R["node_pass"][sizes[0]] * nodes
        rows.append(["backward", fmt_ns(c["backward"]), fmt_ns(walk), fmt_x(c["backward"] / walk),
                     f"the bare C pass (node_pass.c at {int(sizes[0]):.0e} nodes) × {nodes:,} nodes"])
    free = med([r["free_floor_ns"] for r in fl])
    rows.append(["free", fmt_ns(c["free"]), fmt_ns(free), fmt_x(c["free"] / free),
                 f"dropping a list of {fl[0]['free_floor_n']:,} fresh Python floats"])
    rows.append(["step", f"**{fmt_ns(c['step'])}**", fmt_ns(m["floats"]["forward"]),
                 fmt_x(paired_ratio(R, "cython", "floats")), "the whole eager step ÷ the floats forward (target)"])
    return ("The compiled engine's eager step (its demo row) part by part, against what the same part "
            "costs with no graph. Medians; the forward and step ratios are per-round ratios.\n\n"
            + table(["<part", "compiled eager", "floor", "÷ floor", "<floor"], rows))


def md_tape_floors(R, m, paired_ratio):
    """The Tape + optim step part by part against its instruction-at-a-time loops in bare C, against the
    program batched by sample in bare C (the next design's floor), and against the
    hand-written C step; every ratio a median of per-round ratios (all of them are timed in
    the demo rounds)."""
    t, c = m.get("tape-optim"), m.get("c")
    if not t or not c:
        return "Not measured (needs the Tape + optim and the hand-written C rows).\n"
    own, batched = m.get("tape-loops"), m.get("by-sample")
    rows = []
    for part, ph in (("forward", "forward"), ("zero_grad + backward", "backward"),
                     ("optimizer step", "update"), ("step", "step")):
        loops = ph != "update"          # the program has no optimizer step
        rows.append([part, fmt_ns(t[ph]), fmt_ns(own[ph]) if own and loops else "–",
                     fmt_ns(batched[ph]) if batched and loops else "–", fmt_ns(c[ph]),
                     fmt_x(paired_ratio(R, "tape-optim", "tape-loops", ph)) if own and loops else "–",
                     fmt_x(paired_ratio(R, "by-sample", "c", ph)) if batched and loops else "–",
                     fmt_x(paired_ratio(R, "tape-optim", "c", ph))])
    import workers      # not at the top: workers imports this module
    n = next((r["instructions"] for r in R["demo"].get("tape-loops", []) if r), None)
    return ("The replayed step (its Tape + optim row) part by part; every column is timed in the "
            "demo rounds, and every ratio is a median of per-round ratios. The Tape's and the C "
            "step rows are timed alike: the step from a run with no clock inside a step, the "
            "phases from a run with a clock between them (so the phases add up to more than the "
            "step). **An instruction at a time "
            "in C**: `tape_pass.c` running the demo's own Tape program (" + (f"{n:,} instructions"
            if n else "not run: " + R.get("loops_note", "")) + ") with the Tape's loops for one "
            "instruction at a time (a sum's FMAs in a loop of their own, zero-grad runs skipped as "
            "the Tape skips them) and no Python: the floor of replaying an instruction per node, "
            "which the Tape's blocks (a dense layer's neurons run side by side) go below. Its "
            f"leaves hold the model after "
            f"{workers.PROGRAM_STEP} training steps, the middle of the timed Tape + optim steps "
            "and of the C step's. "
            "**By sample in C**: the same program reordered by `by_sample.py` so that each "
            "instruction of the per-sample stretch runs for every sample in one loop (the reorder "
            "keeps the order of every sum, and the loops' results are checked bit for bit against "
            "the instruction-at-a-time loops; it skips nothing): the floor of a replay batched by sample. "
            "**Hand-written C**: `demo_step.c`, the same step on dense arrays with no graph.\n\n"
            + table(["<part", "Tape + optim", "an instruction at a time in C", "by sample in C",
                     "hand-written C", "Tape ÷ an instruction at a time", "by sample ÷ hand-written", "Tape ÷ hand-written"], rows))

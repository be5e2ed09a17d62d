"""The chart RESULTS.md and the README link: drawn by run.py from one results dict."""
from fmt import fmt_x


def chart(R, labels, engines, paired_ratio, path):
    """Speedups over upstream (left) and ns per node by graph size (right), as a PNG at path;
    returns what it did."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart written"
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [1.1, 1]})
    bars = [(labels[e], paired_ratio(R, "upstream", e)) for e in engines if e in R["demo"] and e != "floats"]
    bars = [(lab, r) for lab, r in bars if r]
    if bars:
        labs, vals = zip(*bars)
        left.barh(range(len(bars)), vals, color=["#d62728" if "upstream" in b else "#1f77b4" for b in labs])
        left.set_yticks(range(len(bars)), labs)
        left.invert_yaxis()
        left.set_xscale("log")
        left.set_xlim(right=max(vals) * 20)
        for y, v in enumerate(vals):
            left.text(v, y, f" {fmt_x(v)}", va="center", fontsize=8)
    left.set_xlabel("demo step: speedup over upstream micrograd 0.1.0 (median, log scale)")
    for (e, s), color in {("cython", "chain"): "#1f77b4", ("cython", "dag"): "#2ca02c",
                          ("cython", "wide"): "#17becf", ("python", "chain"): "#9467bd"}.items():
        pts = sorted((r["n"], r) for r in R["scale"] if (r["engine"], r["shape"]) == (e, s))
        ns = [n for n, _ in pts]
        right.plot(ns, [r["backward"] for _, r in pts], "-o", color=color, label=f"{labels[e]} {s}: backward")
        if e == "cython":
            right.plot(ns, [r["tape_forward"] + r["tape_backward"] for _, r in pts], ":s", color=color,
                       mfc="none", label=f"Tape {s}: forward+backward")
    bare = sorted((int(n), v) for n, v in R["node_pass"].items())
    if bare:
        right.plot(*zip(*bare), "--k", label="bare C pass")
    right.set(xscale="log", yscale="log", xlabel="op nodes", ylabel="ns per node (median CPU time)")
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"micrograd, compiled — {R['machine']['cpu']}, Python {R['python']}, {R['date']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart written to {path}"

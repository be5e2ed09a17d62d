"""Number and Markdown formatting shared by run.py and peers.py."""
import statistics


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_ns(ns):
    if ns is None:
        return "–"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_x(x):
    if x is None:
        return "–"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.1f}×" if x >= 10 else f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


def cell(text):
    return str(text).replace("|", "/").replace("\n", " ")


def table(header, rows):
    aligns = ["---" if h.startswith("<") else "---:" for h in header]
    return "\n".join([f"| {' | '.join(h.lstrip('<') for h in header)} |", f"|{'|'.join(aligns)}|"]
                     + [f"| {' | '.join(map(str, r))} |" for r in rows]) + "\n"

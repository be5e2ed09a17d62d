"""The Tape demo step with micrograd.optim.SGD vs with the README's Python loops.

    PYTHONPATH=src python benchmarks/optim_step.py [--steps 200]

The moons demo replayed from one Tape, its steps alternating between the two forms, each
timed in process CPU time; prints medians (µs) of the whole step and of its zero_grad +
update part. (Bit-identity of the two forms is tested in tests/test_optim.py.)
"""
import argparse
import statistics
import time

from micrograd import demo as _demo
from micrograd.optim import SGD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200, help="steps of each form")
    args = ap.parse_args()
    clock = time.process_time_ns
    # One model and one Tape: a second live Tape would make each replay bring the other's
    # nodes up to date first. The forms alternate step by step on the same training run;
    # since SGD's update is the loop's bit for bit, the run is the notebook's either way.
    d = _demo.Demo("cython")
    total, _, _ = d.loss()
    tape = d.Tape(total)
    params = d.model.parameters()
    opt = SGD(params, lr=1.0)
    times = {"loop": [], "optim": [], "loop_update": [], "optim_update": []}
    for i in range(2 * args.steps + 2):
        lr = _demo.learning_rate(i % 100)
        if i % 2 == 0:
            # README form: model.zero_grad() and the notebook's update, in Python
            t0 = clock()
            tape.forward()
            t1 = clock()
            d.model.zero_grad()
            t2 = clock()
            tape.backward()
            t3 = clock()
            for p in params:
                p.data -= lr * p.grad
            t4 = clock()
            form = "loop"
        else:
            # the same step with the optimizer's C loops
            t0 = clock()
            tape.forward()
            t1 = clock()
            opt.zero_grad()
            t2 = clock()
            tape.backward()
            t3 = clock()
            opt.param_groups[0]["lr"] = lr
            opt.step()
            t4 = clock()
            form = "optim"
        if i >= 2:   # the first step of each warms caches
            times[form].append(t4 - t0)
            times[form + "_update"].append((t2 - t1) + (t4 - t3))
    med = {k: statistics.median(v) / 1000 for k, v in times.items()}
    print(f"{args.steps} Tape steps of each form, alternating; process CPU time, medians:")
    print(f"  Tape + Python loops (model.zero_grad(); p.data -= lr*p.grad): {med['loop']:.1f} us "
          f"(of which zero_grad + update {med['loop_update']:.1f} us)")
    print(f"  Tape + micrograd.optim.SGD (opt.zero_grad(); opt.step()):     {med['optim']:.1f} us "
          f"(of which zero_grad + step {med['optim_update']:.1f} us)")
    print(f"  step ratio {med['loop'] / med['optim']:.2f}x")


if __name__ == "__main__":
    main()

/* The moons demo step written by hand in C: the physical limit for the benchmark.

   Same data, same model, same loss, same update as upstream micrograd's demo.ipynb
   (and micrograd.demo.Demo.step), but on dense arrays with hand-derived gradients:
   no graph, no autodiff, no allocation per step.

     model   MLP(2, [16, 16, 1]): two ReLU layers of 16, one linear output
     loss    mean_i relu(1 - y_i * score_i)  +  1e-4 * sum(p * p)
     update  p -= (1.0 - 0.9 * k / 100) * grad

   The timed loop replays steps k = 0..9 from the initial parameters over and over
   (see CYCLE), so its states match the Python engines' first timed steps: the
   backward pass here skips samples whose margin is met, so its cost depends on them.

   Sums are taken in the order micrograd takes them (bias first, then w_j * x_j;
   the losses, then * (1.0 / n); the squares from 0), so the loss agrees with the
   Python engines to the last few bits.

   Input (a text file, written by benchmarks/workers.py from the same seeded Demo):
     n
     x0 x1 y            (n lines)
     337 parameters     (nn.py's parameters() order: per layer, per neuron, w..., b)

   Usage: demo_step DATAFILE MIN_SECONDS
   Prints one JSON object: the first four losses (to check the arithmetic against the
   Python engines), nanoseconds per step (a loop with no clock inside) and per phase
   (a loop with a clock between the phases); medians over 5 batches.

   Built by benchmarks/run.py with `cc -O2 demo_step.c -o demo_step`. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NMAX 4096
#define NIN 2
#define H1 16
#define H2 16

static int n;
static double X[NMAX][NIN], Y[NMAX];

/* parameters and gradients */
static double w1[H1][NIN], b1[H1], w2[H2][H1], b2[H2], w3[H2], b3;
static double gw1[H1][NIN], gb1[H1], gw2[H2][H1], gb2[H2], gw3[H2], gb3;

/* activations kept for the backward pass */
static double a1[NMAX][H1], a2[NMAX][H2], score[NMAX];

static double forward(void)
{
    double data_loss = 0.0, reg = 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < H1; j++) {
            double act = b1[j];
            for (int q = 0; q < NIN; q++) act += w1[j][q] * X[i][q];
            a1[i][j] = act < 0.0 ? 0.0 : act;
        }
        for (int j = 0; j < H2; j++) {
            double act = b2[j];
            for (int q = 0; q < H1; q++) act += w2[j][q] * a1[i][q];
            a2[i][j] = act < 0.0 ? 0.0 : act;
        }
        double s = b3;
        for (int q = 0; q < H2; q++) s += w3[q] * a2[i][q];
        score[i] = s;
        double margin = 1.0 + (-Y[i]) * s;
        data_loss += margin < 0.0 ? 0.0 : margin;
    }
    data_loss = data_loss * (1.0 / n);
    for (int j = 0; j < H1; j++) { for (int q = 0; q < NIN; q++) reg += w1[j][q] * w1[j][q]; reg += b1[j] * b1[j]; }
    for (int j = 0; j < H2; j++) { for (int q = 0; q < H1; q++) reg += w2[j][q] * w2[j][q]; reg += b2[j] * b2[j]; }
    for (int q = 0; q < H2; q++) reg += w3[q] * w3[q];
    reg += b3 * b3;
    return data_loss + 1e-4 * reg;
}

static void backward(void)
{
    const double alpha2 = 2.0 * 1e-4, inv_n = 1.0 / n;
    double d2[H2], d1[H1];
    /* zero_grad, then the L2 term's gradient */
    for (int j = 0; j < H1; j++) { for (int q = 0; q < NIN; q++) gw1[j][q] = alpha2 * w1[j][q]; gb1[j] = alpha2 * b1[j]; }
    for (int j = 0; j < H2; j++) { for (int q = 0; q < H1; q++) gw2[j][q] = alpha2 * w2[j][q]; gb2[j] = alpha2 * b2[j]; }
    for (int q = 0; q < H2; q++) gw3[q] = alpha2 * w3[q];
    gb3 = alpha2 * b3;
    for (int i = 0; i < n; i++) {
        double margin = 1.0 + (-Y[i]) * score[i];
        if (!(margin > 0.0)) continue;          /* relu passes no gradient */
        double ds = inv_n * (-Y[i]);            /* d total / d score_i */
        gb3 += ds;
        for (int q = 0; q < H2; q++) {
            gw3[q] += a2[i][q] * ds;
            d2[q] = a2[i][q] > 0.0 ? w3[q] * ds : 0.0;
        }
        for (int q = 0; q < H1; q++) d1[q] = 0.0;
        for (int j = 0; j < H2; j++) {
            if (d2[j] == 0.0) continue;
            gb2[j] += d2[j];
            for (int q = 0; q < H1; q++) {
                gw2[j][q] += a1[i][q] * d2[j];
                d1[q] += w2[j][q] * d2[j];
            }
        }
        for (int j = 0; j < H1; j++) {
            if (!(a1[i][j] > 0.0)) continue;
            gb1[j] += d1[j];
            for (int q = 0; q < NIN; q++) gw1[j][q] += X[i][q] * d1[j];
        }
    }
}

static void update(int k)
{
    const double lr = 1.0 - 0.9 * k / 100;   /* micrograd.demo.learning_rate(k) */
    for (int j = 0; j < H1; j++) { for (int q = 0; q < NIN; q++) w1[j][q] -= lr * gw1[j][q]; b1[j] -= lr * gb1[j]; }
    for (int j = 0; j < H2; j++) { for (int q = 0; q < H1; q++) w2[j][q] -= lr * gw2[j][q]; b2[j] -= lr * gb2[j]; }
    for (int q = 0; q < H2; q++) w3[q] -= lr * gw3[q];
    b3 -= lr * gb3;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);   /* process CPU time, as the Python workers */
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static volatile double sink;   /* keeps the compiler from dropping the work */

/* The timed workload: CYCLE consecutive steps k = 0..CYCLE-1 from the initial
   parameters, over and over, so that the C step sees the same early-training states
   (how many samples still have a positive margin) as the Python engines' timed steps. */
#define CYCLE 10
static double init_params[sizeof w1 + sizeof b1 + sizeof w2 + sizeof b2 + sizeof w3 + sizeof b3];

static void params_io(int save)
{
    char *buf = (char *)init_params;
    struct { void *p; size_t n; } parts[] = {
        {w1, sizeof w1}, {b1, sizeof b1}, {w2, sizeof w2}, {b2, sizeof b2}, {w3, sizeof w3}, {&b3, sizeof b3}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (save) memcpy(buf, parts[i].p, parts[i].n); else memcpy(parts[i].p, buf, parts[i].n);
        buf += parts[i].n;
    }
}

static int cycle_k = 0;
static inline void next_state(void)
{
    if (++cycle_k == CYCLE) { cycle_k = 0; params_io(0); }
}

static double median_of(double *t, int m)
{
    for (int a = 1; a < m; a++)        /* insertion sort */
        for (int b = a; b > 0 && t[b] < t[b - 1]; b--) { double s = t[b]; t[b] = t[b - 1]; t[b - 1] = s; }
    return m % 2 ? t[m / 2] : 0.5 * (t[m / 2 - 1] + t[m / 2]);
}

/* ns per full step (no clock inside the loop), median of batches */
static double time_steps(long iters, int batches)
{
    double t[64];
    for (int b = 0; b < batches; b++) {
        double t0 = now(), acc = 0.0;
        for (long it = 0; it < iters; it++) {
            acc += forward(); backward(); update(cycle_k); next_state();
        }
        t[b] = (now() - t0) / iters * 1e9;
        sink = acc;
    }
    return median_of(t, batches);
}

/* ns per phase (a clock between the phases), median of batches */
static void time_phases(long iters, int batches, double *fwd, double *bwd, double *upd)
{
    double tf[64], tb[64], tu[64];
    for (int b = 0; b < batches; b++) {
        double sf = 0, sb = 0, su = 0, acc = 0.0;
        for (long it = 0; it < iters; it++) {
            double t0 = now();
            acc += forward();
            double t1 = now();
            backward();
            double t2 = now();
            update(cycle_k);
            double t3 = now();
            next_state();
            sf += t1 - t0; sb += t2 - t1; su += t3 - t2;
        }
        tf[b] = sf / iters * 1e9; tb[b] = sb / iters * 1e9; tu[b] = su / iters * 1e9;
        sink = acc;
    }
    *fwd = median_of(tf, batches); *bwd = median_of(tb, batches); *upd = median_of(tu, batches);
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: %s DATAFILE MIN_SECONDS\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    double min_seconds = atof(argv[2]);
    int ok = fscanf(f, "%d", &n) == 1 && n > 0 && n <= NMAX;
    for (int i = 0; ok && i < n; i++) ok = fscanf(f, "%lf %lf %lf", &X[i][0], &X[i][1], &Y[i]) == 3;
    for (int j = 0; ok && j < H1; j++) {
        for (int q = 0; ok && q < NIN; q++) ok = fscanf(f, "%lf", &w1[j][q]) == 1;
        ok = ok && fscanf(f, "%lf", &b1[j]) == 1;
    }
    for (int j = 0; ok && j < H2; j++) {
        for (int q = 0; ok && q < H1; q++) ok = fscanf(f, "%lf", &w2[j][q]) == 1;
        ok = ok && fscanf(f, "%lf", &b2[j]) == 1;
    }
    for (int q = 0; ok && q < H2; q++) ok = fscanf(f, "%lf", &w3[q]) == 1;
    ok = ok && fscanf(f, "%lf", &b3) == 1;
    fclose(f);
    if (!ok) { fprintf(stderr, "%s: malformed data file\n", argv[1]); return 1; }

    params_io(1);

    /* the first four steps with k = 0..3, losses printed for the cross-check */
    double losses[4];
    for (int k = 0; k < 4; k++) { losses[k] = forward(); backward(); update(k); }
    params_io(0);

    /* calibrate: iterations per batch so that a batch takes ~min_seconds / 10 */
    long iters = CYCLE;
    for (;;) {
        double t0 = now();
        for (long it = 0; it < iters; it++) { sink = forward(); backward(); update(cycle_k); next_state(); }
        double dt = now() - t0;
        if (dt > min_seconds / 100 || iters > (1L << 30)) { iters = (long)(iters * (min_seconds / 10) / dt) + 1; break; }
        iters *= 2;
    }
    iters = (iters + CYCLE - 1) / CYCLE * CYCLE;     /* whole cycles */
    cycle_k = 0; params_io(0);
    int batches = 5;
    double ns_step = time_steps(iters, batches);
    double ns_forward, ns_backward, ns_update;
    time_phases(iters, batches, &ns_forward, &ns_backward, &ns_update);
    printf("{\"losses\": [%.17g, %.17g, %.17g, %.17g], \"iters_per_batch\": %ld, \"batches\": %d, "
           "\"cycle\": %d, \"ns_step\": %.1f, \"ns_forward\": %.1f, \"ns_backward\": %.1f, \"ns_update\": %.1f}\n",
           losses[0], losses[1], losses[2], losses[3], iters, batches, CYCLE,
           ns_step, ns_forward, ns_backward, ns_update);
    return 0;
}

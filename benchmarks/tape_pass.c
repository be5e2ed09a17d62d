/* The floor a Tape replay is measured against: forward and backward over the same graph as
 * workers.py's scale shapes, in the Tape's layout (16-byte instructions {op, x, y, z} that
 * name slots of dense double arrays val[] and grd[], leaves first, instruction k writing
 * slot n_leaves + k), written as plain C loops that know each node's op from its position:
 * no dispatch, no Python objects, no fusion. What the Tape adds over this (dispatch on the
 * op code, reading its leaves from their Values and writing grads back) is the
 * interpreter's cost; run.py's scale table divides the Tape's forward+backward by it.
 *
 *   chain:N        z = z * y, N times              (leaves z0, y)
 *   wide:N         z = z + x_i over N leaves        (leaves z0, x_1..x_N)
 *   dag:N:FILE     the random DAG: spine z = (z + r) * 0.5, r = spine[pick_j], the picks
 *                  (N/2 of them, int32, native order) written by run.py from workers.py's
 *                  dag_picks(N), so that both run the same graph   (leaves z0, 0.5)
 *   prog:N:FILE    a recorded Tape's own program (written by `workers.py program`: int64
 *                  leaves, instructions N, slots; the leaves' data; N instructions), run
 *                  by the Tape's own loops: dispatch on the op code, FMA fused, the running
 *                  sum carried in a register both ways (in forward, a sum's FMAs in a loop
 *                  of their own), zero-grad runs skipped in backward.
 *                  Not a floor of the graph but of the design: what a Tape replay one
 *                  instruction at a time would cost with no Python around it (the Tape
 *                  itself runs a dense layer's neurons as blocks, core/blocks.pxi, which
 *                  these loops do not; ADD, MUL, RELU and FMA only: the ops of the demo's
 *                  program)
 *   runs:N:FILE    the same program reordered by benchmarks/by_sample.py (written by
 *                  `workers.py program --runs`: the prog header, then the repetition's
 *                  start, reps and period): each instruction of the per-sample stretch runs
 *                  for every sample in one strided loop, a weight's grad summed in a
 *                  register. The floor of a replay batched by sample; checked bit for bit
 *                  against the prog loops on the same program before it is timed
 *
 * usage: tape_pass SECONDS_PER_SIZE SPEC...; prints one JSON line
 *   {"runs": [{"shape": ..., "n": N, "forward": ns, "backward": ns, "pass": ns}, ...]}
 * (ns per op node, per instruction for prog; medians over the passes; every pass is a
 * forward then a backward).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { int op, x, y, z; } Instr;     /* the Tape's instruction (_engine.pxd) */
enum { CHAIN, WIDE, DAG, PROG, RUNS };
enum { ADD = 1, MUL = 2, RELU = 5, FMA = 11 };  /* op codes (_engine.pxd) */

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);   /* process CPU time, as the workers */
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void* x, const void* y) {
    double a = *(const double*)x, b = *(const double*)y;
    return (a > b) - (a < b);
}

static void* alloc(size_t n) {
    void* p = calloc(n ? n : 1, 1);
    if (p == NULL) {
        fprintf(stderr, "tape_pass: out of memory\n");
        exit(1);
    }
    return p;
}

static long runs_start, reps, period;    /* the runs shape's repetition (see plan_runs) */
static void plan_runs(const Instr* code);

/* The program of one graph: leaves' values in val[0, L), instructions code[0, n). */
static long build(int shape, long n, const char* picks_file, Instr** code_out, double** val_out,
                  long* leaves_out, long* slots_out) {
    long L = shape == WIDE ? n + 1 : 2;
    Instr* code;
    double* val;
    *slots_out = L + n;
    if (shape == PROG || shape == RUNS) {
        int64_t head[6];                        /* leaves, instructions, slots (runs: start,
                                                   reps, period) */
        int nh = shape == RUNS ? 6 : 3;
        FILE* f = fopen(picks_file, "rb");
        if (f == NULL || (int)fread(head, sizeof(int64_t), nh, f) != nh || head[1] != n) {
            fprintf(stderr, "tape_pass: cannot read a program of %ld instructions from %s\n", n,
                    picks_file);
            exit(2);
        }
        L = head[0];
        *slots_out = head[2];
        code = alloc(n * sizeof(Instr));
        val = alloc(head[2] * sizeof(double));
        if ((long)fread(val, sizeof(double), L, f) != L || (long)fread(code, sizeof(Instr), n, f) != n) {
            fprintf(stderr, "tape_pass: %s is cut short\n", picks_file);
            exit(2);
        }
        fclose(f);
        for (long k = 0; k < n; k++)
            if (code[k].op != ADD && code[k].op != MUL && code[k].op != RELU && code[k].op != FMA) {
                fprintf(stderr, "tape_pass: op %d is not one this floor runs\n", code[k].op);
                exit(2);
            }
        if (shape == RUNS) {
            runs_start = head[3], reps = head[4], period = head[5];
            if (runs_start < 0 || reps < 3 || period < 1 || runs_start + reps * period > n) {
                fprintf(stderr, "tape_pass: bad repetition in %s\n", picks_file);
                exit(2);
            }
            plan_runs(code);
        }
        *code_out = code;
        *val_out = val;
        *leaves_out = L;
        return n;
    }
    code = alloc(n * sizeof(Instr));
    val = alloc((L + n) * sizeof(double));
    if (shape == CHAIN) {                       /* slot 0: z0, 1: y */
        val[0] = 1.0;
        val[1] = 0.9999999;
        for (long k = 0; k < n; k++)
            code[k] = (Instr){2, k ? L + k - 1 : 0, 1, 0};
    } else if (shape == WIDE) {                 /* slot 0: z0, 1..n: x_i */
        val[0] = 0.0;
        for (long i = 1; i <= n; i++) val[i] = 1.0 + 1e-9 * (i - 1);
        for (long k = 0; k < n; k++)
            code[k] = (Instr){1, k ? L + k - 1 : 0, (int)k + 1, 0};
    } else {                                    /* slot 0: z0, 1: 0.5; spine[0] = z0 */
        long m = n / 2;
        int* picks = alloc(m * sizeof(int));
        FILE* f = fopen(picks_file, "rb");
        if (f == NULL || (long)fread(picks, sizeof(int), m, f) != m) {
            fprintf(stderr, "tape_pass: cannot read %ld picks from %s\n", m, picks_file);
            exit(2);
        }
        fclose(f);
        val[0] = 1.0;
        val[1] = 0.5;
        for (long j = 0; j < m; j++) {          /* spine[j + 1] is MUL j, in slot L + 2j + 1 */
            long p = picks[j];
            code[2 * j] = (Instr){1, j ? L + 2 * j - 1 : 0, p ? (int)(L + 2 * p - 1) : 0, 0};
            code[2 * j + 1] = (Instr){2, L + 2 * j, 1, 0};
        }
        free(picks);
        n = 2 * m;
    }
    *code_out = code;
    *val_out = val;
    *leaves_out = L;
    return n;
}

/* relu's forward rule as the core computes it (core/rules.pxi: _relu): a mask, no branch. */
static double relu(double a) {
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    bits &= (uint64_t)(a < 0.0) - 1;
    memcpy(&a, &bits, sizeof a);
    return a;
}

/* Tape._regions' chain: per FMA, how many FMAs right after it continue its sum. */
static int* chain;

static void plan_chain(const Instr* code, long L, long n) {
    chain = alloc(n * sizeof(int));
    for (long k = n - 2; k >= 0; k--)
        if (code[k + 1].op == FMA && code[k + 1].x == L + k)
            chain[k] = chain[k + 1] + 1;
}

/* Tape.forward's loop (core/tape.pxi, core/replay.pxi) for the ops of prog, instructions [from, to); with
   chains (the prog shape), a sum's FMAs run in their own loop (_run_chain), as in the Tape. */
static void prog_forward(const Instr* code, double* val, long L, long from, long to) {
    double out = L + from ? val[L + from - 1] : 0.0, a;
    for (long k = from; k < to; k++) {
        Instr c = code[k];
        a = c.x == L + k - 1 ? out : val[c.x];
        if (c.op >= FMA) {
            out = a + val[c.y] * val[c.z];
            val[L + k] = out;
            long m = chain && k + 1 < to ? chain[k] : 0;
            if (m) {
                const Instr* e = code + k + 1;
                double* o = val + L + k + 1;
                m = m < to - k - 1 ? m : to - k - 1;
                for (long j = 0; j < m; j++) {
                    out = out + val[e[j].y] * val[e[j].z];
                    o[j] = out;
                }
                k += m;
            }
            continue;
        }
        else if (c.op == ADD)
            out = a + val[c.y];
        else if (c.op == MUL)
            out = a * val[c.y];
        else
            out = relu(a);
        val[L + k] = out;
    }
}

/* _run_backward (core/replay.pxi) for the ops of prog: instruction k, and on down its chain
   of FMAs (not below from); returns the next instruction to run. */
static long prog_step(const Instr* code, const double* val, double* grd, long L, long k, long from) {
    double g = grd[L + k], dx, dy, acc;
    for (;;) {
        Instr c = code[k];
        if (c.op != FMA) {
            dx = c.op == ADD ? 1.0 : c.op == MUL ? val[c.y] : val[L + k] > 0.0;
            dy = c.op == ADD ? 1.0 : c.op == MUL ? val[c.x] : 0.0;
            grd[c.x] += dx * g;
            grd[c.y] += dy * g;
            return k - 1;
        }
        acc = grd[c.x] + g;
        grd[c.x] = acc;
        grd[c.y] += val[c.z] * g;
        grd[c.z] += val[c.y] * g;
        k--;
        if (k < from || c.x != L + k || c.y == c.x || c.z == c.x)
            return k;
        g = acc;
    }
}

/* Tape.backward's loop for the ops of prog, instructions [from, to) from the last down, with
   no skipping (the runs shape's stretches). */
static void prog_backward(const Instr* code, const double* val, double* grd, long L, long from,
                          long to) {
    for (long k = to - 1; k >= from;)
        k = prog_step(code, val, grd, L, k, from);
}

/* Tape._regions and Tape.backward's skip of zero-grad runs (the demo's ops are all
   zero-safe; the leaves' grads restart at +0.0 here, never -0.0). */
enum { SKIP_MIN = 8 };                   /* as in _engine.pxd */
static int* lo;

static void use(int* last_use, long i, long n, long k) {
    if (i >= 0 && i < n)
        last_use[i] = (int)k;
}

static void plan_skips(const Instr* code, long L, long n) {
    int* last_use = alloc(n * sizeof(int));
    lo = alloc(n * sizeof(int));
    for (long k = 0; k < n; k++)
        last_use[k] = (int)n;
    for (long k = 0; k < n; k++) {
        use(last_use, code[k].x - L, n, k);
        use(last_use, code[k].y - L, n, k);
        if (code[k].op == FMA)
            use(last_use, code[k].z - L, n, k);
    }
    for (long k = 0; k < n; k++) {
        long s = k;
        while (s > 0 && last_use[s - 1] <= k)
            s = lo[s - 1];
        lo[k] = (int)s;
    }
    free(last_use);
}

static int all_finite(const double* v, long n) {
    uint64_t acc = 0, bits;
    for (long i = 0; i < n; i++) {
        memcpy(&bits, v + i, sizeof bits);
        acc |= (bits & 0x7ff0000000000000ULL) + 0x0010000000000000ULL;
    }
    return (acc >> 63) == 0;
}

static void prog_backward_skipping(const Instr* code, const double* val, double* grd, long L,
                                   long n) {
    for (long k = n - 1; k >= 0;) {
        long j = lo[k];
        if (k - j >= SKIP_MIN && grd[L + k] == 0.0 && all_finite(val + L + j, k - j + 1))
            k = j - 1;
        else
            k = prog_step(code, val, grd, L, k, 0);
    }
}

/* The runs shape: instructions runs_start + j*reps + r (r < reps) form run j, one instruction of
   the per-sample stretch for every sample; each run's slots move by a fixed stride from r = 1
   on (r = 0 may read what came before the stretch: it runs through the prog loops). */
typedef struct { int op; long k, x, dx, y, dy, z, dz; } Run;
static Run* runs;

static void plan_runs(const Instr* code) {
    runs = alloc(period * sizeof(Run));
    for (long j = 0; j < period; j++) {
        long k = runs_start + j * reps;
        Instr a = code[k + 1], b = code[k + 2];
        Run u = {a.op, k, 0, b.x - a.x, 0, b.y - a.y, 0, b.z - a.z};
        u.x = a.x - u.dx, u.y = a.y - u.dy, u.z = a.z - u.dz;   /* where r = 0 would read */
        for (long r = 1; r < reps; r++) {
            Instr c = code[k + r];
            if (c.op != u.op || c.x != u.x + r * u.dx || c.y != u.y + r * u.dy || c.z != u.z + r * u.dz) {
                fprintf(stderr, "tape_pass: run %ld does not move by a fixed stride\n", j);
                exit(2);
            }
        }
        runs[j] = u;
    }
}

/* Run u, r = 1..reps-1: a weight (a factor that is the same slot for every r) is loaded once. */
static void run_forward(const Run* u, double* val, long L) {
    double* o = val + L + u->k;
    const double *x = val + u->x, *y = val + u->y, *z = val + u->z;
    long dx = u->dx, dy = u->dy, dz = u->dz;
    if (u->op == FMA && dy == 0) {
        double w = *y;
        for (long r = 1; r < reps; r++) o[r] = x[r * dx] + w * z[r * dz];
    } else if (u->op == FMA)
        for (long r = 1; r < reps; r++) o[r] = x[r * dx] + y[r * dy] * z[r * dz];
    else if (u->op == ADD)
        for (long r = 1; r < reps; r++) o[r] = x[r * dx] + y[r * dy];
    else if (u->op == MUL)
        for (long r = 1; r < reps; r++) o[r] = x[r * dx] * y[r * dy];
    else
        for (long r = 1; r < reps; r++) o[r] = x[r * dx] < 0.0 ? 0.0 : x[r * dx];
}

/* Run u, r = reps-1..1, the same arithmetic in the same order as prog_backward: a weight's
   grad is summed in a register (when neither other operand is the same slot). */
static void run_backward(const Run* u, const double* val, double* grd, long L) {
    const double* g = grd + L + u->k;
    const double* o = val + L + u->k;
    const double *x = val + u->x, *y = val + u->y, *z = val + u->z;
    double *gx = grd + u->x, *gy = grd + u->y, *gz = grd + u->z;
    long dx = u->dx, dy = u->dy, dz = u->dz;
    if (u->op == FMA && dy == 0 && dx && dz) {
        double w = *y, gw = *gy;
        for (long r = reps - 1; r >= 1; r--) {
            gx[r * dx] += g[r];
            gw += z[r * dz] * g[r];
            gz[r * dz] += w * g[r];
        }
        *gy = gw;
    } else if (u->op == FMA)
        for (long r = reps - 1; r >= 1; r--) {
            gx[r * dx] += g[r];
            gy[r * dy] += z[r * dz] * g[r];
            gz[r * dz] += y[r * dy] * g[r];
        }
    else if (u->op == ADD)
        for (long r = reps - 1; r >= 1; r--) {
            gx[r * dx] += g[r];
            gy[r * dy] += g[r];
        }
    else if (u->op == MUL)
        for (long r = reps - 1; r >= 1; r--) {
            double a = x[r * dx], b = y[r * dy];
            gx[r * dx] += b * g[r];
            gy[r * dy] += a * g[r];
        }
    else
        for (long r = reps - 1; r >= 1; r--) {
            gx[r * dx] += (o[r] > 0.0) * g[r];
            gy[r * dy] += 0.0 * g[r];
        }
}

static void runs_forward(const Instr* code, double* val, long L, long n) {
    prog_forward(code, val, L, 0, runs_start);
    for (long j = 0; j < period; j++) {
        prog_forward(code, val, L, runs[j].k, runs[j].k + 1);
        run_forward(&runs[j], val, L);
    }
    prog_forward(code, val, L, runs_start + reps * period, n);
}

static void runs_backward(const Instr* code, const double* val, double* grd, long L, long n) {
    prog_backward(code, val, grd, L, runs_start + reps * period, n);
    for (long j = period - 1; j >= 0; j--) {
        run_backward(&runs[j], val, grd, L);
        prog_backward(code, val, grd, L, runs[j].k, runs[j].k + 1);
    }
    prog_backward(code, val, grd, L, 0, runs_start);
}

static void forward(int shape, const Instr* code, double* val, long L, long n) {
    double* out = val + L;
    if (shape == PROG)
        prog_forward(code, val, L, 0, n);
    else if (shape == RUNS)
        runs_forward(code, val, L, n);
    else if (shape == CHAIN)
        for (long k = 0; k < n; k++) out[k] = val[code[k].x] * val[code[k].y];
    else if (shape == WIDE)
        for (long k = 0; k < n; k++) out[k] = val[code[k].x] + val[code[k].y];
    else
        for (long k = 0; k < n; k += 2) {
            out[k] = val[code[k].x] + val[code[k].y];
            out[k + 1] = val[code[k + 1].x] * val[code[k + 1].y];
        }
}

static void backward(int shape, const Instr* code, const double* val, double* grd, long L, long n,
                     long slots) {
    memset(grd, 0, slots * sizeof(double));     /* grads restart from 0 (leaves' included) */
    grd[L + n - 1] = 1.0;
    if (shape == PROG)
        prog_backward_skipping(code, val, grd, L, n);
    else if (shape == RUNS)
        runs_backward(code, val, grd, L, n);
    else if (shape == CHAIN)
        for (long k = n - 1; k >= 0; k--) {
            double g = grd[L + k];
            grd[code[k].x] += val[code[k].y] * g;
            grd[code[k].y] += val[code[k].x] * g;
        }
    else if (shape == WIDE)
        for (long k = n - 1; k >= 0; k--) {
            double g = grd[L + k];
            grd[code[k].x] += g;
            grd[code[k].y] += g;
        }
    else
        for (long k = n - 1; k >= 0; k -= 2) {
            double g = grd[L + k];              /* the MUL */
            grd[code[k].x] += val[code[k].y] * g;
            grd[code[k].y] += val[code[k].x] * g;
            g = grd[L + k - 1];                 /* the ADD */
            grd[code[k - 1].x] += g;
            grd[code[k - 1].y] += g;
        }
}

/* Exit unless the runs give the prog loops' values and grads on the same program, bit for bit. */
static void check_runs(const Instr* code, double* val, double* grd, long L, long n, long slots) {
    double* v = alloc(slots * sizeof(double));
    double* g = alloc(slots * sizeof(double));
    forward(PROG, code, val, L, n);
    backward(PROG, code, val, grd, L, n, slots);
    memcpy(v, val, slots * sizeof(double));
    memcpy(g, grd, slots * sizeof(double));
    forward(RUNS, code, val, L, n);
    backward(RUNS, code, val, grd, L, n, slots);
    if (memcmp(v, val, slots * sizeof(double)) || memcmp(g, grd, slots * sizeof(double))) {
        fprintf(stderr, "tape_pass: the runs differ from the prog loops\n");
        exit(2);
    }
    free(v);
    free(g);
}

int main(int argc, char** argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.3, sink = 0.0;
    if (argc < 3) {
        fprintf(stderr, "usage: tape_pass SECONDS_PER_SIZE chain:N|wide:N|dag:N:PICKS|prog:N:FILE|runs:N:FILE ...\n");
        return 2;
    }
    printf("{\"runs\": [");
    for (int s = 2; s < argc; s++) {
        char spec[4096], *name = strtok(strncpy(spec, argv[s], sizeof spec - 1), ":");
        char *num = strtok(NULL, ":"), *file = strtok(NULL, "");
        int shape = !strcmp(name, "chain") ? CHAIN : !strcmp(name, "wide") ? WIDE
                  : !strcmp(name, "dag") ? DAG : !strcmp(name, "prog") ? PROG : !strcmp(name, "runs") ? RUNS : -1;
        long n = num ? atol(num) : 0, L, slots, cap = 100000, k = 0;
        Instr* code;
        double *val, *grd, *tf = alloc(cap * sizeof(double)), *tb = alloc(cap * sizeof(double));
        double* tt = alloc(cap * sizeof(double));
        if (shape < 0 || n < 2 || (shape >= DAG && file == NULL)) {
            fprintf(stderr, "tape_pass: bad spec %s\n", argv[s]);
            return 2;
        }
        n = build(shape, n, file, &code, &val, &L, &slots);
        grd = alloc(slots * sizeof(double));
        if (shape == PROG || shape == RUNS) {   /* RUNS: check_runs runs the prog loops */
            plan_skips(code, L, n);
            plan_chain(code, L, n);
        }
        if (shape == RUNS)                      /* the runs compute what the prog loops do */
            check_runs(code, val, grd, L, n, slots);
        forward(shape, code, val, L, n);        /* page everything in before timing */
        backward(shape, code, val, grd, L, n, slots);
        double start = now_ns();
        while (k < cap && (k < 5 || now_ns() - start < seconds * 1e9)) {
            double t0 = now_ns();
            forward(shape, code, val, L, n);
            double t1 = now_ns();
            backward(shape, code, val, grd, L, n, slots);
            double t2 = now_ns();
            tf[k] = (t1 - t0) / n;
            tb[k] = (t2 - t1) / n;
            tt[k++] = (t2 - t0) / n;
            sink += val[L + n - 1] + grd[0];
        }
        qsort(tf, k, sizeof(double), cmp);
        qsort(tb, k, sizeof(double), cmp);
        qsort(tt, k, sizeof(double), cmp);
        printf("%s{\"shape\": \"%s\", \"n\": %ld, \"forward\": %.3f, \"backward\": %.3f, "
               "\"pass\": %.3f}", s > 2 ? ", " : "", name, n, tf[k / 2], tb[k / 2], tt[k / 2]);
        free(code);
        free(val);
        free(runs);                             /* the runs shape's plan, NULL for the others */
        runs = NULL;
        free(lo);                               /* the prog shape's skips and chains, likewise */
        free(chain);
        lo = NULL;
        chain = NULL;
        free(grd);
        free(tf);
        free(tb);
        free(tt);
    }
    printf("], \"sink\": %g}\n", sink);
    return 0;
}

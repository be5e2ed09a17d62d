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
 *                  sum carried in a register both ways. Not a floor of the graph but of
 *                  the design: what a Tape replay would cost with no Python around it
 *                  (ADD, MUL, RELU and FMA only: the ops of the demo's program)
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
enum { CHAIN, WIDE, DAG, PROG };
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

/* The program of one graph: leaves' values in val[0, L), instructions code[0, n). */
static long build(int shape, long n, const char* picks_file, Instr** code_out, double** val_out,
                  long* leaves_out, long* slots_out) {
    long L = shape == WIDE ? n + 1 : 2;
    Instr* code;
    double* val;
    *slots_out = L + n;
    if (shape == PROG) {
        int64_t head[3];                        /* leaves, instructions, slots */
        FILE* f = fopen(picks_file, "rb");
        if (f == NULL || fread(head, sizeof(int64_t), 3, f) != 3 || head[1] != n) {
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

/* Tape.forward's loop (core/tape.pxi) for the ops of prog. */
static void prog_forward(const Instr* code, double* val, long L, long n) {
    double out = L ? val[L - 1] : 0.0, a;
    for (long k = 0; k < n; k++) {
        Instr c = code[k];
        a = c.x == L + k - 1 ? out : val[c.x];
        if (c.op >= FMA)
            out = a + val[c.y] * val[c.z];
        else if (c.op == ADD)
            out = a + val[c.y];
        else if (c.op == MUL)
            out = a * val[c.y];
        else
            out = a < 0.0 ? 0.0 : a;
        val[L + k] = out;
    }
}

/* Tape.backward's loop (_run_backward in core/tape.pxi) for the ops of prog. */
static void prog_backward(const Instr* code, const double* val, double* grd, long L, long n, long slots) {
    memset(grd, 0, slots * sizeof(double));
    grd[L + n - 1] = 1.0;
    for (long k = n - 1; k >= 0;) {
        double g = grd[L + k], dx, dy, acc;
        for (;;) {
            Instr c = code[k];
            if (c.op != FMA) {
                dx = c.op == ADD ? 1.0 : c.op == MUL ? val[c.y] : val[L + k] > 0.0;
                dy = c.op == ADD ? 1.0 : c.op == MUL ? val[c.x] : 0.0;
                grd[c.x] += dx * g;
                grd[c.y] += dy * g;
                k--;
                break;
            }
            acc = grd[c.x] + g;
            grd[c.x] = acc;
            grd[c.y] += val[c.z] * g;
            grd[c.z] += val[c.y] * g;
            k--;
            if (k < 0 || c.x != L + k || c.y == c.x || c.z == c.x)
                break;
            g = acc;
        }
    }
}

static void forward(int shape, const Instr* code, double* val, long L, long n) {
    double* out = val + L;
    if (shape == PROG)
        prog_forward(code, val, L, n);
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
    if (shape == PROG) {
        prog_backward(code, val, grd, L, n, slots);
        return;
    }
    memset(grd, 0, (L + n) * sizeof(double));  /* grads restart from 0 (leaves' included) */
    grd[L + n - 1] = 1.0;
    if (shape == CHAIN)
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

int main(int argc, char** argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.3, sink = 0.0;
    if (argc < 3) {
        fprintf(stderr, "usage: tape_pass SECONDS_PER_SIZE chain:N|wide:N|dag:N:PICKS|prog:N:FILE ...\n");
        return 2;
    }
    printf("{\"runs\": [");
    for (int s = 2; s < argc; s++) {
        char spec[4096], *name = strtok(strncpy(spec, argv[s], sizeof spec - 1), ":");
        char *num = strtok(NULL, ":"), *file = strtok(NULL, "");
        int shape = !strcmp(name, "chain") ? CHAIN : !strcmp(name, "wide") ? WIDE
                  : !strcmp(name, "dag") ? DAG : !strcmp(name, "prog") ? PROG : -1;
        long n = num ? atol(num) : 0, L, slots, cap = 100000, k = 0;
        Instr* code;
        double *val, *grd, *tf = alloc(cap * sizeof(double)), *tb = alloc(cap * sizeof(double));
        double* tt = alloc(cap * sizeof(double));
        if (shape < 0 || n < 2 || ((shape == DAG || shape == PROG) && file == NULL)) {
            fprintf(stderr, "tape_pass: bad spec %s\n", argv[s]);
            return 2;
        }
        n = build(shape, n, file, &code, &val, &L, &slots);
        grd = alloc(slots * sizeof(double));
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
        free(grd);
        free(tf);
        free(tb);
        free(tt);
    }
    printf("], \"sink\": %g}\n", sink);
    return 0;
}

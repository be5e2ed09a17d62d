/* The least work a backward over n 56-byte nodes can do: one pass, newest first, each
 * node adding its grad (times its data) into the next older one, as a chain's backward
 * does, with no graph logic at all. run.py's scale table divides the engine's backward and
 * the Tape's forward+backward by its ns per node at the same sizes. run.py compiles this
 * with the system compiler.
 *
 * usage: node_pass SECONDS_PER_SIZE N1 N2 ...; prints one JSON line
 *   {"node_bytes": 56, "sizes": [N1, ...], "ns_per_node": [...]}  (medians of the passes)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {            /* the engine's node: 56 bytes on every platform */
    char header[16];        /* refcount and type */
    double data, grad;
    char rest[24];          /* operands, op code, flags, tape slot */
} Node;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);   /* process CPU time */
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void* x, const void* y) {
    double a = *(const double*)x, b = *(const double*)y;
    return (a > b) - (a < b);
}

int main(int argc, char** argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    double sink = 0.0;
    if (argc < 3) {
        fprintf(stderr, "usage: node_pass SECONDS_PER_SIZE N1 N2 ...\n");
        return 2;
    }
    printf("{\"node_bytes\": %zu, \"sizes\": [", sizeof(Node));
    for (int s = 2; s < argc; s++)
        printf("%s%ld", s > 2 ? ", " : "", atol(argv[s]));
    printf("], \"ns_per_node\": [");
    for (int s = 2; s < argc; s++) {
        long n = atol(argv[s]);
        int cap = 100000, k = 0;
        Node* v;
        double* t;
        if (n < 2) {
            fprintf(stderr, "node_pass: sizes must be at least 2\n");
            return 2;
        }
        v = malloc(n * sizeof(Node));
        t = malloc(cap * sizeof(double));
        if (v == NULL || t == NULL) {
            fprintf(stderr, "node_pass: cannot allocate %ld nodes\n", n);
            return 1;
        }
        memset(v, 0, n * sizeof(Node));           /* page it in before timing */
        for (long i = 0; i < n; i++) v[i].data = 1.0 - 1e-12 * (double)(i % 1000);   /* no underflow */
        double start = now_ns();
        while (k < cap && (k < 5 || now_ns() - start < seconds * 1e9)) {
            double t0 = now_ns();
            v[n - 1].grad = 1.0;
            for (long i = n - 1; i > 0; i--)
                v[i - 1].grad += v[i].grad * v[i].data;
            t[k++] = (now_ns() - t0) / n;
            sink += v[0].grad;
            for (long i = 0; i < n; i++) v[i].grad = 0.0;   /* as zero_grad: untimed */
        }
        qsort(t, k, sizeof(double), cmp);
        printf("%s%.3f", s > 2 ? ", " : "", t[k / 2]);
        free(t);
        free(v);
    }
    printf("], \"sink\": %g}\n", sink);
    return 0;
}

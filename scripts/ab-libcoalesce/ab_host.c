/* ab_host.c MODEL_DIR ROUNDS: built against the 0.1 header (Bindings/c/abi/coalesce-0.1.h), run against
 * any libcoalesce since 0.1 (LD_LIBRARY_PATH and COALESCE_PLUGIN_DIR pick it). Build and run:
 *   cp Bindings/c/abi/coalesce-0.1.h /tmp/ab/coalesce.h
 *   gcc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wno-deprecated-declarations -I/tmp/ab scripts/ab-libcoalesce/ab_host.c \
 *       -o /tmp/ab/ab_host -LPREFIX/lib -lcoalesce
 *   COALESCE_PLUGIN_DIR=PREFIX/lib/coalesce/backends LD_LIBRARY_PATH=PREFIX/lib /tmp/ab/ab_host MODEL_DIR 10
 * with PREFIX from `make install-lib PREFIX=... BACKENDS=CoalescerBackend INSTALL_MODELS=` at each commit
 * (a git worktree per commit). Prints the median load time (create + load + free of a fresh engine,
 * ROUNDS times) and the median batch-1 generate latency at 1 and 2 steps (200 calls each). */
#include <coalesce.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
static double median(double *v, int n) { qsort(v, n, sizeof *v, cmp); return v[n / 2]; }
int main(int argc, char **argv) {
    const char *dir = argv[1]; int rounds = atoi(argv[2]);
    const char *slash = strrchr(dir, '/'), *name = slash ? slash + 1 : dir;
    double loads[64];
    cz_engine_options o = cz_engine_default_options();
    o.threads = 0;
    for (int r = 0; r < rounds; r++) {
        cz_engine *e = NULL;
        double t0 = now();
        if (cz_engine_create(&o, &e) != 0 || cz_model_load(e, name, dir) != 0) { fprintf(stderr, "load: %s\n", cz_engine_errmsg(e)); return 1; }
        loads[r] = now() - t0;
        cz_engine_free(e);
    }
    cz_engine *e = NULL;
    cz_engine_create(&o, &e); cz_model_load(e, name, dir);
    double lat[2][200];
    for (int s = 1; s <= 2; s++) {
        cz_generate_params p = cz_generate_default_params();
        p.model = name; p.prompt = "ankle boot"; p.count = 1; p.steps = s;
        for (int i = 0; i < 220; i++) {
            cz_image_batch *b = NULL; p.seed = i;
            double t0 = now();
            if (cz_generate(e, &p, &b) != 0) { fprintf(stderr, "gen: %s\n", cz_engine_errmsg(e)); return 1; }
            double dt = now() - t0;
            cz_image_batch_free(b);
            if (i >= 20) lat[s - 1][i - 20] = dt;
        }
    }
    printf("%s load_ms %.2f  gen1_us %.0f  gen2_us %.0f\n", cz_version(), median(loads, rounds) * 1e3,
           median(lat[0], 200) * 1e6, median(lat[1], 200) * 1e6);
    cz_engine_free(e);
    return 0;
}

// See include/CCoalesceBLAS.h for why OpenBLAS is loaded with dlopen.
#define _GNU_SOURCE
#include "CCoalesceBLAS.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc);
typedef char *(*str_fn)(void);
typedef int (*geti_fn)(void);
typedef void (*seti_fn)(int);
typedef void (*dsyevd_fn)(const char *jobz, const char *uplo, const int *n, double *a,
                          const int *lda, double *w, double *work, const int *lwork,
                          int *iwork, const int *liwork, int *info);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_status = -1;
static char g_error[512] = "";
static char g_source[32] = "none";
static char g_features[256] = "";
static sgemm_fn g_sgemm = NULL;
static str_fn g_corename = NULL;
static str_fn g_config = NULL;
static geti_fn g_get_threads = NULL;
static seti_fn g_set_threads = NULL;
static dsyevd_fn g_dsyevd = NULL;

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };

static int cpu_has(const char *feature) {
    // __builtin_cpu_supports needs a literal; map the few features we care about.
    __builtin_cpu_init();
    if (strcmp(feature, "avx512f") == 0) return __builtin_cpu_supports("avx512f");
    if (strcmp(feature, "avx512bw") == 0) return __builtin_cpu_supports("avx512bw");
    if (strcmp(feature, "avx512vl") == 0) return __builtin_cpu_supports("avx512vl");
    if (strcmp(feature, "avx512dq") == 0) return __builtin_cpu_supports("avx512dq");
    if (strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
    if (strcmp(feature, "fma") == 0) return __builtin_cpu_supports("fma");
    if (strcmp(feature, "avx") == 0) return __builtin_cpu_supports("avx");
    if (strcmp(feature, "sse4.2") == 0) return __builtin_cpu_supports("sse4.2");
    return 0;
}

const char *ccblas_cpu_features(void) {
    static const char *names[] = {"sse4.2", "avx", "avx2", "fma", "avx512f", "avx512dq",
                                  "avx512bw", "avx512vl"};
    if (g_features[0] == 0) {
        char buf[256] = "";
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (cpu_has(names[i])) {
                if (buf[0]) strncat(buf, " ", sizeof(buf) - strlen(buf) - 1);
                strncat(buf, names[i], sizeof(buf) - strlen(buf) - 1);
            }
        }
        memcpy(g_features, buf, sizeof(buf));
    }
    return g_features;
}

const char *ccblas_preferred_core(void) {
    // SkylakeX kernels need AVX-512 F/BW/VL/DQ; Haswell kernels need AVX2 + FMA.
    if (cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512vl") && cpu_has("avx512dq"))
        return "SkylakeX";
    if (cpu_has("avx2") && cpu_has("fma")) return "Haswell";
    return "";
}

// Runs once per copy of this loader (pthread_once: concurrent first callers wait for it, which is
// the lock coalesce.h's THREAD SAFETY section speaks of). OpenBLAS takes its core and its thread
// count only from the environment, in its load-time constructor, so this is the one place that
// edits the environment: it sets the two variables only where they are unset and unsets them
// again (their previous state) right after the dlopen.
static void do_load(void) {
    int set_core = 0, set_threads = 0;  // variables we set, unset again once OpenBLAS has read them
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && user[0]) {
        snprintf(g_source, sizeof(g_source), "user");
    } else {
        const char *core = ccblas_preferred_core();
        if (core[0]) {
            setenv("OPENBLAS_CORETYPE", core, 0);
            set_core = 1;
            snprintf(g_source, sizeof(g_source), "coalesce");
        }
    }
    // OpenBLAS runs single-threaded: the tensor core splits products over its own pool (see
    // BLAS.sgemm), so OpenBLAS must not start a second pool of spinning workers at load.
    // COALESCE_OPENBLAS_THREADS asks for OpenBLAS's pool instead (BLAS.swift then sets that many
    // threads and stops splitting). A user's OPENBLAS_NUM_THREADS is left alone: OpenBLAS starts
    // that many threads, but BLAS.swift still sets it to COALESCE_OPENBLAS_THREADS or 1.
    if (!getenv("OPENBLAS_NUM_THREADS")) {
        const char *own = getenv("COALESCE_OPENBLAS_THREADS");
        setenv("OPENBLAS_NUM_THREADS", own && own[0] ? own : "1", 0);
        set_threads = 1;
    }
    // Prefer the pthread build that Debian's libopenblas0-pthread installs.
    static const char *candidates[] = {
        "libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "libopenblas.so",
    };
    void *h = NULL;
    const char *last_err = "";
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]) && !h; i++) {
        h = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) last_err = dlerror();
    }
    // OpenBLAS read both variables in its load-time constructor. Leave the host's environment as
    // it was, so that another OpenBLAS loaded later (numpy's, in a Python host) does not inherit
    // our single thread or our core choice.
    if (set_core) unsetenv("OPENBLAS_CORETYPE");
    if (set_threads) unsetenv("OPENBLAS_NUM_THREADS");
    if (!h) {
        snprintf(g_error, sizeof(g_error), "dlopen(libopenblas.so.0) failed: %s", last_err);
        g_status = -1;
        return;
    }
    g_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
    g_corename = (str_fn)dlsym(h, "openblas_get_corename");
    g_config = (str_fn)dlsym(h, "openblas_get_config");
    g_get_threads = (geti_fn)dlsym(h, "openblas_get_num_threads");
    g_set_threads = (seti_fn)dlsym(h, "openblas_set_num_threads");
    g_dsyevd = (dsyevd_fn)dlsym(h, "dsyevd_");
    if (!g_sgemm) {
        snprintf(g_error, sizeof(g_error), "dlsym(cblas_sgemm) failed: %s", dlerror());
        g_status = -1;
        return;
    }
    g_status = 0;
}

int ccblas_load(void) {
    pthread_once(&g_once, do_load);
    return g_status;
}

const char *ccblas_error(void) { ccblas_load(); return g_error; }
const char *ccblas_corename(void) {
    if (ccblas_load() != 0) return "fallback";
    return g_corename ? g_corename() : "unknown";
}
const char *ccblas_coretype_source(void) { ccblas_load(); return g_source; }
const char *ccblas_config(void) {
    if (ccblas_load() != 0 || !g_config) return "";
    return g_config();
}
int ccblas_get_threads(void) {
    if (ccblas_load() != 0 || !g_get_threads) return 1;
    return g_get_threads();
}
void ccblas_set_threads(int n) {
    if (n < 1) n = 1;
    if (ccblas_load() == 0 && g_set_threads) g_set_threads(n);
}

static __thread int t_thread_cap = 0;
int ccblas_thread_cap(void) { return t_thread_cap; }
void ccblas_set_thread_cap(int cap) { t_thread_cap = cap < 0 ? 0 : cap; }

static void fallback_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                           int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float acc = 0;
            for (int p = 0; p < k; p++) {
                float av = ta ? a[p * lda + i] : a[i * lda + p];
                float bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            c[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * c[i * ldc + j]);
        }
    }
}

void ccblas_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if (ccblas_load() != 0) {
        fallback_sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    g_sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans, m, n, k, alpha,
            a, lda, b, ldb, beta, c, ldc);
}

int ccblas_dsyevd(int n, double *a, double *w) {
    if (ccblas_load() != 0 || !g_dsyevd) return -1000;
    // Row-major symmetric == column-major symmetric; eigenvectors come back column-major,
    // i.e. row-major transposed: a[i*n + j] = component j of eigenvector i... callers see header.
    int lwork = -1, liwork = -1, info = 0;
    double wq;
    int iwq;
    g_dsyevd("V", "U", &n, a, &n, w, &wq, &lwork, &iwq, &liwork, &info);
    if (info != 0) return info;
    lwork = (int)wq;
    liwork = iwq;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    int *iwork = malloc(sizeof(int) * (size_t)liwork);
    if (!work || !iwork) { free(work); free(iwork); return -1001; }
    g_dsyevd("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    free(work);
    free(iwork);
    return info;
}

int ccblas_tune_malloc(void) {
#ifdef M_MMAP_THRESHOLD
    int ok = 1;
    ok &= mallopt(M_MMAP_THRESHOLD, 512 * 1024 * 1024);  /* blocks below 512 MiB from the heap */
    ok &= mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024); /* keep up to 1 GiB free for reuse */
    ok &= mallopt(M_ARENA_MAX, 4);                        /* few arenas: freed blocks get reused */
    return ok ? 0 : -1;
#else
    return -1;
#endif
}

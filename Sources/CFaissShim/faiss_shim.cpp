// extern "C" shim over FAISS; see include/CFaissShim.h.
#include "CFaissShim.h"

#include <dlfcn.h>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/index_factory.h>

// Declared in CCoalesceBLAS (linked into every program that links Training).
extern "C" int ccblas_load(void);
// OpenMP runtime (libgomp); declared here because SwiftPM's clang does not find omp.h.
extern "C" void omp_set_num_threads(int);

struct cfaiss_index {
    faiss::Index *index;
};

namespace {
thread_local std::string g_error;

void set_error(const char *where, const char *what) {
    g_error = std::string(where) + ": " + what;
}

template <typename F>
int guarded(const char *where, F &&body) {
    try {
        g_error.clear();
        body();
        return 0;
    } catch (const std::exception &e) {
        set_error(where, e.what());
    } catch (...) {
        set_error(where, "unknown C++ exception");
    }
    return -1;
}
}  // namespace

extern "C" {

cfaiss_index *cfaiss_create(int dim, const char *description) {
    if (dim <= 0 || description == nullptr) {
        set_error("cfaiss_create", "dimension must be > 0 and description non-NULL");
        return nullptr;
    }
    cfaiss_index *out = nullptr;
    guarded("cfaiss_create", [&] {
        faiss::Index *idx = faiss::index_factory(dim, description, faiss::METRIC_L2);
        out = new cfaiss_index{idx};
    });
    return out;
}

void cfaiss_free(cfaiss_index *index) {
    if (index == nullptr) return;
    delete index->index;
    delete index;
}

int cfaiss_train(cfaiss_index *index, int64_t n, const float *x) {
    if (index == nullptr || (n > 0 && x == nullptr)) {
        set_error("cfaiss_train", "NULL index or data");
        return -1;
    }
    return guarded("cfaiss_train", [&] { index->index->train(n, x); });
}

int cfaiss_is_trained(const cfaiss_index *index) {
    if (index == nullptr) return -1;
    return index->index->is_trained ? 1 : 0;
}

int cfaiss_add(cfaiss_index *index, int64_t n, const float *x) {
    if (index == nullptr || (n > 0 && x == nullptr)) {
        set_error("cfaiss_add", "NULL index or data");
        return -1;
    }
    return guarded("cfaiss_add", [&] { index->index->add(n, x); });
}

int64_t cfaiss_ntotal(const cfaiss_index *index) {
    return index == nullptr ? -1 : (int64_t)index->index->ntotal;
}

int cfaiss_dim(const cfaiss_index *index) {
    return index == nullptr ? -1 : (int)index->index->d;
}

int cfaiss_search(const cfaiss_index *index, int64_t n, const float *q, int64_t k,
                  float *distances, int64_t *labels) {
    if (index == nullptr || k <= 0 || (n > 0 && (q == nullptr || distances == nullptr || labels == nullptr))) {
        set_error("cfaiss_search", "NULL index/buffer or k <= 0");
        return -1;
    }
    static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t), "faiss::Index::idx_t must be 64-bit");
    return guarded("cfaiss_search", [&] {
        index->index->search(n, q, k, distances, reinterpret_cast<faiss::Index::idx_t *>(labels));
    });
}

int cfaiss_set_param(cfaiss_index *index, const char *name, double value) {
    if (index == nullptr || name == nullptr) {
        set_error("cfaiss_set_param", "NULL index or name");
        return -1;
    }
    return guarded("cfaiss_set_param", [&] {
        faiss::ParameterSpace ps;
        ps.set_index_parameter(index->index, name, value);
    });
}

void cfaiss_set_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

const char *cfaiss_last_error(void) { return g_error.c_str(); }

// ---- Fortran BLAS / LAPACK symbols that libfaiss.a references --------------------------------
// Forwarded to the OpenBLAS that CCoalesceBLAS dlopened (RTLD_LOCAL, so we look it up by handle).
// If OpenBLAS cannot be loaded, the call aborts with a message: FAISS has no fallback, and only
// paths we do not use by default (PCA/OPQ training, large exhaustive batches) reach these.

static void *cfaiss_blas_symbol(const char *name) {
    static void *handle = nullptr;
    if (handle == nullptr) {
        ccblas_load();
        const char *candidates[] = {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"};
        for (const char *c : candidates) {
            handle = dlopen(c, RTLD_NOW | RTLD_LOCAL);
            if (handle != nullptr) break;
        }
    }
    void *sym = handle ? dlsym(handle, name) : nullptr;
    if (sym == nullptr) {
        std::fprintf(stderr, "CFaissShim: BLAS symbol %s unavailable (OpenBLAS not loadable)\n", name);
        std::abort();
    }
    return sym;
}

#define CFAISS_FORWARD(name, params, args)                                   \
    typedef int (*name##_fn) params;                                         \
    int name params {                                                        \
        static name##_fn fn = (name##_fn)cfaiss_blas_symbol(#name);          \
        return fn args;                                                      \
    }

typedef int FINT;
CFAISS_FORWARD(sgemm_, (const char *ta, const char *tb, FINT *m, FINT *n, FINT *k, const float *alpha,
                        const float *a, FINT *lda, const float *b, FINT *ldb, float *beta, float *c,
                        FINT *ldc),
               (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
CFAISS_FORWARD(dgemm_, (const char *ta, const char *tb, FINT *m, FINT *n, FINT *k, const double *alpha,
                        const double *a, FINT *lda, const double *b, FINT *ldb, double *beta, double *c,
                        FINT *ldc),
               (ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
CFAISS_FORWARD(ssyrk_, (const char *uplo, const char *trans, FINT *n, FINT *k, float *alpha, float *a,
                        FINT *lda, float *beta, float *c, FINT *ldc),
               (uplo, trans, n, k, alpha, a, lda, beta, c, ldc))
CFAISS_FORWARD(sgeqrf_, (FINT *m, FINT *n, float *a, FINT *lda, float *tau, float *work, FINT *lwork,
                         FINT *info),
               (m, n, a, lda, tau, work, lwork, info))
CFAISS_FORWARD(sorgqr_, (FINT *m, FINT *n, FINT *k, float *a, FINT *lda, float *tau, float *work,
                         FINT *lwork, FINT *info),
               (m, n, k, a, lda, tau, work, lwork, info))
CFAISS_FORWARD(sgetrf_, (FINT *m, FINT *n, float *a, FINT *lda, FINT *ipiv, FINT *info),
               (m, n, a, lda, ipiv, info))
CFAISS_FORWARD(sgetri_, (FINT *n, float *a, FINT *lda, FINT *ipiv, float *work, FINT *lwork, FINT *info),
               (n, a, lda, ipiv, work, lwork, info))
CFAISS_FORWARD(dgetrf_, (FINT *m, FINT *n, double *a, FINT *lda, FINT *ipiv, FINT *info),
               (m, n, a, lda, ipiv, info))
CFAISS_FORWARD(dgetri_, (FINT *n, double *a, FINT *lda, FINT *ipiv, double *work, FINT *lwork, FINT *info),
               (n, a, lda, ipiv, work, lwork, info))
CFAISS_FORWARD(sgesvd_, (const char *jobu, const char *jobvt, FINT *m, FINT *n, float *a, FINT *lda,
                         float *s, float *u, FINT *ldu, float *vt, FINT *ldvt, float *work, FINT *lwork,
                         FINT *info),
               (jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, info))
CFAISS_FORWARD(dgesvd_, (const char *jobu, const char *jobvt, FINT *m, FINT *n, double *a, FINT *lda,
                         double *s, double *u, FINT *ldu, double *vt, FINT *ldvt, double *work,
                         FINT *lwork, FINT *info),
               (jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, info))
CFAISS_FORWARD(sgelsd_, (FINT *m, FINT *n, FINT *nrhs, float *a, FINT *lda, float *b, FINT *ldb, float *s,
                         float *rcond, FINT *rank, float *work, FINT *lwork, FINT *iwork, FINT *info),
               (m, n, nrhs, a, lda, b, ldb, s, rcond, rank, work, lwork, iwork, info))
CFAISS_FORWARD(dsyev_, (const char *jobz, const char *uplo, FINT *n, double *a, FINT *lda, double *w,
                        double *work, FINT *lwork, FINT *info),
               (jobz, uplo, n, a, lda, w, work, lwork, info))

}  // extern "C"

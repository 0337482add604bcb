// CFaissShim: a tiny extern "C" surface over FAISS (Debian libfaiss-dev, linked statically).
//
// Every function catches C++ exceptions at the boundary: a failing call returns a non-zero status
// (or NULL) and cfaiss_last_error() says what went wrong. Indexes use squared L2 distance.
//
// BLAS: libfaiss.a calls Fortran BLAS/LAPACK symbols (sgemm_, ssyrk_, sgesvd_, ...). We do not
// link OpenBLAS (that would load it before OPENBLAS_CORETYPE is chosen, see CCoalesceBLAS.h);
// instead faiss_shim.cpp defines those symbols and forwards each call to the OpenBLAS that
// CCoalesceBLAS has dlopened (same library, same fast kernels).
#ifndef CFAISS_SHIM_H
#define CFAISS_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque FAISS index handle.
typedef struct cfaiss_index cfaiss_index;

/// Creates an index over `dim`-dimensional float vectors from a faiss::index_factory
/// description ("Flat", "HNSW32", "IVF256,Flat", ...), L2 metric. NULL on failure.
cfaiss_index *cfaiss_create(int dim, const char *description);
/// Frees the index. NULL is a no-op.
void cfaiss_free(cfaiss_index *index);
/// Trains the index on n vectors x (n, dim) (needed by IVF; a no-op for Flat/HNSW). 0 = ok.
int cfaiss_train(cfaiss_index *index, int64_t n, const float *x);
/// Whether the index is trained (ready for add). 1 yes, 0 no, -1 on error.
int cfaiss_is_trained(const cfaiss_index *index);
/// Adds n vectors x (n, dim); they get ids ntotal..ntotal+n-1. 0 = ok.
int cfaiss_add(cfaiss_index *index, int64_t n, const float *x);
/// Number of stored vectors, or -1 on error.
int64_t cfaiss_ntotal(const cfaiss_index *index);
/// Dimension of the index, or -1 on error.
int cfaiss_dim(const cfaiss_index *index);
/// k nearest neighbours of n queries q (n, dim). Writes distances (n, k) (squared L2, ascending)
/// and labels (n, k) (-1 where fewer than k results). Both buffers are owned by the caller. 0 = ok.
int cfaiss_search(const cfaiss_index *index, int64_t n, const float *q, int64_t k,
                  float *distances /* out */, int64_t *labels /* out */);
/// Sets a search-time parameter by name ("nprobe" for IVF, "efSearch" for HNSW). 0 = ok.
int cfaiss_set_param(cfaiss_index *index, const char *name, double value);
/// Threads FAISS's OpenMP loops use (<= 0 leaves the default).
void cfaiss_set_threads(int n);
/// Message of the last failure on this thread ("" if none). Valid until the next call.
const char *cfaiss_last_error(void);

#ifdef __cplusplus
}
#endif
#endif

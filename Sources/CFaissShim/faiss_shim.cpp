// FAISS shim lands with the coalescer issue.

// Exposes Include/coalesce.h (the public C API of libcoalesce) to the Swift module that
// implements it (Sources/CoalesceC), plus private helpers. Private symbols here are prefixed
// ccapi_ and are not exported from libcoalesce.so (Sources/CoalesceC/exports.map).
#ifndef CCOALESCE_API_H
#define CCOALESCE_API_H
// The deprecated by-value functions are inline wrappers in the public header; the library
// exports its own, frozen versions of them (Exports+Engine.swift, Exports+Generate.swift).
#define CZ_NO_DEPRECATED 1
#include "../../../Include/coalesce.h"

/// cz_engine_options exactly as version 0.1 published it: what the exported (deprecated)
/// cz_engine_default_options returns to programs built against 0.1. Never change.
typedef struct {
    uint32_t struct_size;
    const char *plugin_dir;
    const char *models_dir;
    int32_t threads;
    int32_t preload;
} ccapi_engine_options_v0_1;

/// cz_generate_params exactly as version 0.1 published it (see above). Never change.
typedef struct {
    uint32_t struct_size;
    const char *model;
    const char *prompt;
    uint64_t seed;
    int32_t steps;
    int32_t count;
    float guidance;
    cz_progress_fn progress;
    void *user_data;
    uint32_t timeout_ms;
} ccapi_generate_params_v0_1;

/// C sizeof of each struct version (Swift's MemoryLayout.size leaves out tail padding).
size_t ccapi_sizeof_engine_options_v0_1(void);
size_t ccapi_sizeof_engine_options(void);
size_t ccapi_sizeof_generate_params_v0_1(void);
size_t ccapi_sizeof_generate_params(void);
size_t ccapi_sizeof_model_info(void);

/// Path of the shared object that contains this function (libcoalesce.so), written into buf
/// (NUL-terminated). Returns 0 on success, -1 if dladdr cannot tell.
int ccapi_library_path(char *buf, unsigned long cap);
#endif

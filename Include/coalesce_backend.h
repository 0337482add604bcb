/*
 * coalesce_backend.h — the ABI between the Coalesce host (daemon, C library, CLI) and a
 * backend plugin. A backend is a shared library that exports ONE symbol:
 *
 *     const cz_backend_vtable *cz_backend_entry(void);
 *
 * The host dlopens the plugin by name from its plugin directory, looks up cz_backend_entry,
 * checks abi_major == CZ_BACKEND_ABI_MAJOR (and abi_minor >= the minor it needs for optional
 * slots), and then talks to the backend only through the vtable. Plugins may be written in C
 * (see Plugins/TestPattern) or in anything that can export C functions.
 *
 * Ownership rules (every buffer):
 *  - Strings and structs passed INTO a backend call are owned by the host and valid only
 *    for the duration of the call; the backend copies what it keeps.
 *  - The vtable returned by cz_backend_entry is static, owned by the plugin, valid until dlclose.
 *  - A cz_backend_model * is created by create() and released only by destroy().
 *  - describe() returns a NUL-terminated JSON string owned by the model, valid until destroy().
 *  - generate() writes into a pixel buffer the HOST allocated (count * height * width *
 *    channels bytes, as given by describe and the request); the backend never allocates it.
 *  - Error messages are written by the backend into the host-provided err buffer (err_cap
 *    bytes, always NUL-terminated when err_cap > 0).
 *
 * Thread safety: generate() may be called concurrently on the same model from several threads;
 * the backend must make that safe (or serialise internally). create/destroy are not called
 * concurrently with other calls on the same model.
 */
#ifndef COALESCE_BACKEND_H
#define COALESCE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CZ_BACKEND_ABI_MAJOR 1
#define CZ_BACKEND_ABI_MINOR 2   /* 1: optional generate_batch slot; 2: cz_backend_request.threads */

/* The one exported symbol's name, for dlsym. */
#define CZ_BACKEND_ENTRY_SYMBOL "cz_backend_entry"

/* Status codes returned by backend calls (same numbering as coalesce.h's cz_status and the
 * wire's coalesce.v1.ErrorCode; 5 = deadline exceeded and 7 = unavailable are host-only codes,
 * a backend never returns them). */
typedef enum {
    CZ_BACKEND_OK = 0,
    CZ_BACKEND_INVALID_ARGUMENT = 1, /* bad prompt, steps, count, ... (message says which) */
    CZ_BACKEND_NOT_FOUND = 2,        /* model directory or weights file missing */
    CZ_BACKEND_RESOURCE_EXHAUSTED = 3, /* out of memory */
    CZ_BACKEND_CANCELLED = 4,        /* the progress callback returned 0 */
    CZ_BACKEND_INTERNAL = 6          /* anything else; message says what */
} cz_backend_status;

/* Opaque per-model state owned by the backend. */
typedef struct cz_backend_model cz_backend_model;

/*
 * Progress callback, per call. step counts from 1 to total. Return nonzero to continue,
 * 0 to cancel (the backend then stops as soon as it can and returns CZ_BACKEND_CANCELLED).
 * May be NULL. Called on the thread that called generate().
 */
typedef int (*cz_backend_progress_fn)(int step, int total, void *user_data);

/* One generation request, in host memory (valid for the duration of the call).
 * Fields are only appended, each after the previous version's sizeof (never in its tail
 * padding), so struct_size tells a backend which fields the host filled: 40 bytes = ABI 1.0/1.1,
 * 48 = ABI 1.2. A backend reads a field only when struct_size covers it. */
typedef struct {
    uint32_t struct_size;      /* sizeof(cz_backend_request) as the host compiled it */
    const char *prompt;        /* UTF-8, NUL-terminated, never NULL ("" = unconditional) */
    uint64_t seed;             /* image i of the batch uses seed + i */
    int32_t steps;             /* network evaluations; 0 = backend default; -1 = "auto" */
    int32_t count;             /* images to produce, >= 1 */
    float guidance;            /* classifier-free guidance scale; ignored where unsupported */
    /* ---- ABI 1.2 (struct_size >= 48) ---- */
    uint32_t reserved0;        /* the tail padding of 1.1, named; always 0 */
    int32_t threads;           /* compute threads the host wants this call to use (the host's
                                  per-engine setting, e.g. cz_engine_options.threads), 1..4096;
                                  0 = the backend's own default. A hint: a backend may use fewer
                                  or ignore it. Passed as a value so that no host edits the
                                  environment (COALESCE_THREADS) to configure a backend. */
} cz_backend_request;

typedef struct {
    uint32_t abi_major;        /* required: CZ_BACKEND_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;        /* required: CZ_BACKEND_ABI_MINOR the plugin was built with */
    const char *name;          /* required: backend name, e.g. "coalescer" (static string) */
    const char *version;       /* required: backend version string (static) */

    /* required: load a model from a directory (holds config.json and weights). On failure
     * returns NULL and writes a message into err. */
    cz_backend_model *(*create)(const char *model_dir, char *err, size_t err_cap);

    /* required: JSON describing the model: {"backend":..., "height":28, "width":28,
     * "channels":1, "default_steps":2, "max_steps":..., "max_batch":...,
     * "supports_guidance":false, "classes":[...]}. Owned by the model. "max_batch" is the most
     * images one generate() or generate_batch() call may ask for: the host cuts bigger requests
     * into calls of at most that many (image i keeping seed + i), and a backend may refuse a call
     * above it with CZ_BACKEND_INVALID_ARGUMENT. */
    const char *(*describe)(cz_backend_model *model);

    /* required: generate req->count images of height*width*channels uint8 pixels into
     * pixels (host-allocated, pixels_cap bytes). Row-major, image after image. */
    int (*generate)(cz_backend_model *model, const cz_backend_request *req,
                    uint8_t *pixels, size_t pixels_cap,
                    cz_backend_progress_fn progress, void *user_data,
                    char *err, size_t err_cap);

    /* required: free everything create() allocated. NULL is a no-op. */
    void (*destroy)(cz_backend_model *model);

    /* ---- abi_minor >= 1 (the host reads this slot only when the plugin's abi_minor >= 1) ---- */

    /* may be NULL: generate several requests in one call (the host's dynamic batcher).
     * reqs[0..n_reqs) all have the same steps and guidance (the host groups them so); request k
     * writes reqs[k].count images, requests one after another in pixels (host-allocated,
     * pixels_cap bytes = sum of counts * height*width*channels). Each image must be identical to
     * what generate() gives for that request alone (same seed -> same pixels, batched or not).
     * progress/cancel apply to the whole call. When NULL the host calls generate() per request. */
    int (*generate_batch)(cz_backend_model *model, const cz_backend_request *reqs, int32_t n_reqs,
                          uint8_t *pixels, size_t pixels_cap,
                          cz_backend_progress_fn progress, void *user_data,
                          char *err, size_t err_cap);
} cz_backend_vtable;

typedef const cz_backend_vtable *(*cz_backend_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif /* COALESCE_BACKEND_H */

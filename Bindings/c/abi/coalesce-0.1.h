/*
 * coalesce.h — the Coalesce engine as a C library (libcoalesce.so).
 *
 * Link: `cc prog.c $(pkg-config --cflags --libs coalesce)`.
 * The library loads model backends as plugins (Include/coalesce_backend.h) from its plugin
 * directory, exactly as the daemon does, so the same model, prompt, seed and steps give the same
 * pixels here, in the CLI and from the daemon.
 *
 * A minimal program:
 *
 *     cz_engine *eng = NULL;
 *     cz_engine_options opt = cz_engine_default_options();
 *     if (cz_engine_create(&opt, &eng) != CZ_OK) { puts(cz_engine_errmsg(NULL)); return 1; }
 *     if (cz_model_load(eng, "test-pattern", NULL) != CZ_OK) { puts(cz_engine_errmsg(eng)); ... }
 *     cz_generate_params p = cz_generate_default_params();
 *     p.model = "test-pattern"; p.prompt = "a sneaker"; p.seed = 42; p.count = 4;
 *     cz_image_batch *batch = NULL;
 *     if (cz_generate(eng, &p, &batch) == CZ_OK) cz_image_write_png(batch, 0, "out.png");
 *     cz_image_batch_free(batch);
 *     cz_engine_free(eng);
 *
 * ---------------------------------------------------------------------------------------------
 * OWNERSHIP (every pointer that crosses this API)
 *  - Strings and structs passed IN (options, params, names, paths, prompts) are owned by the
 *    caller and only read during the call; the library copies whatever it keeps.
 *  - A cz_engine is created by cz_engine_create and released only by cz_engine_free.
 *  - A cz_image_batch is created by cz_generate and released only by cz_image_batch_free. It is
 *    independent of the engine: it stays valid after cz_engine_free.
 *  - Pixel pointers from cz_image_batch_pixels point INTO the batch: valid until
 *    cz_image_batch_free(batch); never free them yourself.
 *  - Strings returned by the library (cz_version, cz_status_string, cz_engine_errmsg, the path
 *    fields of cz_engine_default_options, cz_blas_core) are owned by the library; never free them.
 *    Their lifetimes are stated next to each function.
 *  - Strings the library allocates for you (cz_model_describe) are freed with cz_string_free.
 *  - Every free function accepts NULL and then does nothing.
 *  - A handle that is not live (already freed, or never returned by the library) is detected
 *    where possible: calls answer CZ_INVALID_ARGUMENT and a second free is a no-op. This is a
 *    safety net for a caller bug, not a licence: pointers INTO a freed batch are not checked.
 *
 * THREAD SAFETY
 *  - Every function may be called from any thread.
 *  - Concurrent cz_generate calls on ONE engine are safe: they run in parallel on the calling
 *    threads (the backend serialises internally if it must). So are cz_model_load /
 *    cz_model_unload / cz_model_describe concurrent with cz_generate: loading a name that is
 *    already loaded is a hot swap, and generate calls already running finish on the old model,
 *    which is destroyed after the last of them.
 *  - cz_engine_free must not run concurrently with any other call on the same engine, and the
 *    engine must not be used afterwards (the usual rule for free).
 *  - A cz_image_batch may be read from many threads at once; do not free it while it is read.
 *
 * ERRORS
 *  Functions that can fail return a cz_status. On failure a message saying what went wrong is
 *  available from cz_engine_errmsg(engine) on the SAME thread; it stays valid until the next call
 *  on that engine from that thread (calls on other threads never overwrite it). Calls that have no
 *  engine (cz_engine_create, cz_image_write_png, a call given a NULL engine) store their message
 *  in thread-local storage, read with cz_engine_errmsg(NULL), valid until the calling thread's
 *  next handle-less call. Bad input from the caller (NULL pointers, sizes <= 0, unknown models,
 *  bad paths, absurd counts) is reported this way; the library never aborts on it.
 *
 * ABI STABILITY
 *  Structs passed by pointer start with `struct_size`, filled in by the *_default_* functions.
 *  New fields are only ever appended; the library reads only the first struct_size bytes, so a
 *  program compiled against an older header keeps working with a newer library.
 *  CZ_VERSION_MAJOR changes only when this promise is broken.
 */
#ifndef COALESCE_H
#define COALESCE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CZ_API __attribute__((visibility("default")))
#else
#define CZ_API
#endif

/* ---- Version ------------------------------------------------------------------------------ */

#define CZ_VERSION_MAJOR 0
#define CZ_VERSION_MINOR 1
#define CZ_VERSION_PATCH 0
#define CZ_VERSION_STRING "0.1.0"
/* Single number for #if comparisons: major * 10000 + minor * 100 + patch. */
#define CZ_VERSION_NUMBER (CZ_VERSION_MAJOR * 10000 + CZ_VERSION_MINOR * 100 + CZ_VERSION_PATCH)

/* The library's version as "MAJOR.MINOR.PATCH" (static string, valid forever). Compare with
 * CZ_VERSION_STRING to detect a header/library mismatch. */
CZ_API const char *cz_version(void);
/* The library's CZ_VERSION_NUMBER. */
CZ_API int cz_version_number(void);

/* ---- Status codes (same numbering as coalesce_backend.h and the daemon's wire codes) ------- */

typedef enum {
    CZ_OK = 0,                  /* success */
    CZ_INVALID_ARGUMENT = 1,    /* caller error: NULL pointer, size <= 0, bad count/steps, bad
                                   struct_size, bad index; the message says which argument */
    CZ_NOT_FOUND = 2,           /* unknown model name, missing model directory, config or plugin */
    CZ_RESOURCE_EXHAUSTED = 3,  /* out of memory, or a limit (batch size, queue) was reached */
    CZ_CANCELLED = 4,           /* the progress callback returned 0 */
    CZ_DEADLINE_EXCEEDED = 5,   /* cz_generate_params.timeout_ms elapsed before the images were done */
    CZ_INTERNAL = 6,            /* a bug or an unexpected failure (backend crash report, I/O error
                                   writing a PNG, ...); the message says what */
    CZ_UNAVAILABLE = 7          /* the model is being unloaded / the engine is shutting down; retry */
} cz_status;

/* Name of a status code, e.g. "CZ_NOT_FOUND" (static string; "CZ_UNKNOWN_STATUS" for others). */
CZ_API const char *cz_status_string(int status);

/* ---- Engine ------------------------------------------------------------------------------- */

typedef struct cz_engine cz_engine;             /* opaque; see OWNERSHIP */
typedef struct cz_image_batch cz_image_batch;   /* opaque; see OWNERSHIP */

typedef struct {
    uint32_t struct_size;     /* sizeof(cz_engine_options); set by cz_engine_default_options */
    const char *plugin_dir;   /* directory holding backend plugins (*.so). Default: the
                                 COALESCE_PLUGIN_DIR environment variable, else
                                 <dir of libcoalesce.so>/coalesce/backends, else the directory of
                                 libcoalesce.so itself (a build tree). NULL = that default. */
    const char *models_dir;   /* model repository: cz_model_load(eng, name, NULL) loads
                                 <models_dir>/<name>. Default: COALESCE_MODELS_DIR, else
                                 <dir of libcoalesce.so>/../share/coalesce/models. NULL = default. */
    int32_t threads;          /* compute threads for backends, 0..4096; 0 = leave it to the
                                 backends (one per online core, or COALESCE_THREADS). A positive
                                 value sets COALESCE_THREADS for the process at cz_engine_create;
                                 backends read it once, when they first compute, so it is
                                 process-wide and the first value a backend sees wins. */
    int32_t preload;          /* nonzero: cz_engine_create loads every model under models_dir
                                 (failures are skipped, not fatal). Default 0. */
} cz_engine_options;

/* Defaults for cz_engine_create. The path strings point into library-owned static storage,
 * valid until the library is unloaded. */
CZ_API cz_engine_options cz_engine_default_options(void);

/* Creates an engine. opts may be NULL (= defaults). On success *out receives the engine (free it
 * with cz_engine_free) and CZ_OK is returned; on failure *out is set to NULL and the message is
 * read with cz_engine_errmsg(NULL). */
CZ_API int cz_engine_create(const cz_engine_options *opts, cz_engine **out /* out */);

/* Unloads every model and frees the engine. No other call on this engine may be running or
 * start afterwards. Image batches it produced stay valid. NULL (or an engine already freed) is a
 * no-op. */
CZ_API void cz_engine_free(cz_engine *engine);

/* Message for the last failed call on `engine` from the calling thread ("" if that call
 * succeeded or there was none). engine == NULL: the calling thread's last handle-less call.
 * Owned by the library; valid until the next call on the same engine from the same thread.
 * Never returns NULL. */
CZ_API const char *cz_engine_errmsg(const cz_engine *engine);

/* ---- Models ------------------------------------------------------------------------------- */

/* Loads the model in directory model_dir (holding config.json, which names its backend, and the
 * weights) under `name`. model_dir NULL = <models_dir>/<name>. Loading a name already loaded
 * replaces it (hot swap: the new one is loaded first; if that fails the old one keeps serving).
 * Names (and the last component of model_dir) must match [A-Za-z0-9][A-Za-z0-9._-]* (at most
 * 128 bytes), the rule of the model repository.
 * Errors: CZ_INVALID_ARGUMENT (NULL/empty/bad name, bad config.json), CZ_NOT_FOUND (directory,
 * config.json, backend plugin), CZ_INTERNAL (the plugin or backend refused the model; the
 * message carries its reason). */
CZ_API int cz_model_load(cz_engine *engine, const char *name, const char *model_dir);

/* Unloads `name`; generate calls already running on it finish first. CZ_NOT_FOUND if not loaded.
 * The backend's model is destroyed, but backend plugin files, once used, stay loaded until the
 * process exits: unmapping a plugin whose runtime left threads behind would crash the host. */
CZ_API int cz_model_unload(cz_engine *engine, const char *name);

/* The backend's JSON description of a loaded model ({"backend":..., "height":28, "width":28,
 * "channels":1, "default_steps":..., ...}). On success *json_out receives a NUL-terminated copy
 * that the caller frees with cz_string_free. */
CZ_API int cz_model_describe(cz_engine *engine, const char *name, char **json_out /* out */);

/* Frees a string allocated by the library for the caller. NULL is a no-op. */
CZ_API void cz_string_free(char *s);

/* ---- Generation --------------------------------------------------------------------------- */

/* Progress callback, per cz_generate call. step counts 1..total (network evaluations). Return
 * nonzero to continue, 0 to cancel: cz_generate then returns CZ_CANCELLED as soon as the backend
 * can stop. Called on the thread that called cz_generate, never after cz_generate returns. */
typedef int (*cz_progress_fn)(int step, int total, void *user_data);

/* Largest `count` one cz_generate call accepts. */
#define CZ_MAX_COUNT 4096
/* Largest `steps` one cz_generate call accepts (backends may allow fewer). */
#define CZ_MAX_STEPS 10000
/* Longest prompt, in UTF-8 bytes (the daemon's default limit, so every face accepts the same). */
#define CZ_MAX_PROMPT_BYTES 1024

typedef struct {
    uint32_t struct_size;     /* sizeof(cz_generate_params); set by cz_generate_default_params */
    const char *model;        /* required: name of a loaded model */
    const char *prompt;       /* UTF-8, at most CZ_MAX_PROMPT_BYTES; NULL or "" = unconditional */
    uint64_t seed;            /* image i of the batch uses seed + i (default 0) */
    int32_t steps;            /* network evaluations: 1..the model's max_steps; 0 = the model's
                                 default, -1 = "auto" where the backend has it (default 0) */
    int32_t count;            /* images: 1..min(CZ_MAX_COUNT, the model's max_batch) (default 1) */
    float guidance;           /* classifier-free guidance scale; 0 = the model's default; ignored
                                 where the backend has none (default 0) */
    cz_progress_fn progress;  /* may be NULL */
    void *user_data;          /* passed to progress unchanged; not touched by the library */
    uint32_t timeout_ms;      /* 0 = no deadline; else CZ_DEADLINE_EXCEEDED once it has passed
                                 (checked before the start and at each progress step) */
} cz_generate_params;

/* Defaults: see each field above. */
CZ_API cz_generate_params cz_generate_default_params(void);

/* Generates params->count images. On success *out receives a batch the caller frees with
 * cz_image_batch_free. On failure *out is set to NULL and the status says why (message from
 * cz_engine_errmsg(engine)). The images are a pure function of (model, prompt, seed, steps,
 * guidance): the same inputs give the same pixels in every process and every face. */
CZ_API int cz_generate(cz_engine *engine, const cz_generate_params *params,
                       cz_image_batch **out /* out */);

/* ---- Image batches ------------------------------------------------------------------------ */

/* Accessors. A NULL batch gives 0 / NULL. */
CZ_API int cz_image_batch_count(const cz_image_batch *batch);     /* images in the batch */
CZ_API int cz_image_batch_width(const cz_image_batch *batch);
CZ_API int cz_image_batch_height(const cz_image_batch *batch);
CZ_API int cz_image_batch_channels(const cz_image_batch *batch);  /* 1 = grayscale, 3 = RGB */
/* Pixels of image `index` (0..count-1): height*width*channels uint8 values, row-major, channels
 * interleaved. The images of a batch are contiguous, so index 0 is the whole batch
 * (count*height*width*channels bytes). NULL for a bad index. Valid until cz_image_batch_free. */
CZ_API const uint8_t *cz_image_batch_pixels(const cz_image_batch *batch, int index);
/* The seed image `index` was generated with (params.seed + index); 0 for a bad index. */
CZ_API uint64_t cz_image_batch_seed(const cz_image_batch *batch, int index);

/* Frees the batch and its pixels. NULL is a no-op. */
CZ_API void cz_image_batch_free(cz_image_batch *batch);

/* Writes image `index` of the batch to `path` as an 8-bit PNG (overwriting). Errors:
 * CZ_INVALID_ARGUMENT (NULL batch/path, bad index), CZ_NOT_FOUND (directory missing),
 * CZ_INTERNAL (other I/O failure); message via cz_engine_errmsg(NULL). */
CZ_API int cz_image_write_png(const cz_image_batch *batch, int index, const char *path);

/* ---- Diagnostics -------------------------------------------------------------------------- */

/* The OpenBLAS kernel set ("core") in use in this process, e.g. "SkylakeX". Loads OpenBLAS on
 * first call the way the backends do: OpenBLAS reads OPENBLAS_CORETYPE only when it loads, so
 * unless the host already set it, it is set (setenv) to the best core this CPU supports (cpuid)
 * and only then is OpenBLAS dlopened. libcoalesce never links OpenBLAS itself. Reports the core
 * the backends run with; "fallback" if OpenBLAS cannot be loaded. Static string. */
CZ_API const char *cz_blas_core(void);

#ifdef __cplusplus
}
#endif
#endif /* COALESCE_H */

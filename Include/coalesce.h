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
 *     cz_engine_options opt;
 *     cz_engine_options_init(&opt, sizeof opt);
 *     if (cz_engine_create(&opt, &eng) != CZ_OK) { puts(cz_engine_errmsg(NULL)); return 1; }
 *     if (cz_model_load(eng, "test-pattern", NULL) != CZ_OK) { puts(cz_engine_errmsg(eng)); ... }
 *     cz_generate_params p;
 *     cz_generate_params_init(&p, sizeof p);
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
 *    fields filled in by cz_engine_options_init, cz_kernel_isa) are owned by the library; never
 *    free them. Their lifetimes are stated next to each function.
 *  - Strings the library allocates for you (cz_model_describe) are freed with cz_string_free;
 *    the name list of cz_engine_list_models with cz_string_list_free.
 *  - Every free function accepts NULL and then does nothing.
 *  - A handle that is not live (already freed, or never returned by the library) is detected
 *    where possible: calls answer CZ_INVALID_ARGUMENT and a second free is a no-op. This is a
 *    safety net for a caller bug, not a licence: pointers INTO a freed batch are not checked.
 *
 * THREAD SAFETY
 *  - Every function may be called from any thread.
 *  - Concurrent cz_generate calls on ONE engine are safe: they run in parallel on the calling
 *    threads (the backend serialises internally if it must). So are cz_model_load /
 *    cz_model_unload / cz_model_describe / cz_model_get_info / cz_engine_list_models concurrent
 *    with cz_generate: loading a name that is already loaded is a hot swap, and generate calls
 *    already running finish on the old model, which is destroyed after the last of them.
 *  - cz_engine_free must not run concurrently with any other call on the same engine, and the
 *    engine must not be used afterwards (the usual rule for free).
 *  - A cz_image_batch may be read from many threads at once; do not free it while it is read.
 *  - The host's environment. The library never calls setenv, unsetenv or putenv: the thread
 *    count (cz_engine_options.threads) travels as a value to the backends with every request, and
 *    generation runs on Coalesce's own kernels, not on OpenBLAS (which could take its settings
 *    only from the environment). Variables are only read: COALESCE_PLUGIN_DIR,
 *    COALESCE_MODELS_DIR, COALESCE_LOG, COALESCE_THREADS and COALESCE_ISA (see REPRODUCIBILITY).
 *    A test in the C suite checks this with an LD_PRELOAD spy on setenv/unsetenv/putenv.
 *
 * REPRODUCIBILITY
 *  The images are a pure function of (model files, prompt, seed, steps, guidance): the same
 *  inputs give the same bytes at every batch size and thread count, in every face (this library,
 *  the CLI, the daemon), and on every x86-64 CPU with AVX2 and FMA, whether the kernels run with
 *  AVX-512 or AVX2 (each output is summed in an order that does not depend on the vector width;
 *  tests force both paths and compare the bytes of every bundled model). The promise holds for
 *  one build of the library and its plugins with one C library (glibc's exp, log, sin and cos are
 *  part of the arithmetic). Not covered: CPUs without AVX2 and FMA (the portable kernels round
 *  differently), and other versions of Coalesce (a kernel change can move a pixel by one; the
 *  CHANGELOG says when). cz_kernel_isa() tells which path runs; COALESCE_ISA=avx2 forces AVX2.
 *
 * ERRORS
 *  Functions that can fail return a cz_status. On failure a message saying what went wrong is
 *  available from cz_engine_errmsg(engine) on the SAME thread; it stays valid until the next call
 *  on that engine from that thread (calls on other threads never overwrite it). Calls that have no
 *  engine (cz_engine_create, the *_init functions, cz_image_write_png, a call given a NULL engine)
 *  store their message in thread-local storage, read with cz_engine_errmsg(NULL), valid until the
 *  calling thread's next handle-less call. Bad input from the caller (NULL pointers, sizes <= 0,
 *  unknown models, bad paths, absurd counts) is reported this way; the library never aborts on it.
 *
 * ABI STABILITY (structs that cross the API: cz_engine_options, cz_generate_params, cz_model_info)
 *  - Each struct starts with `uint32_t struct_size`: the size of the struct as the CALLER's
 *    program was compiled (sizeof). The library finds out from it which fields the caller has.
 *  - Fill input structs with cz_engine_options_init / cz_generate_params_init, passing
 *    sizeof(your struct). They write exactly that many bytes (zeroes, then the defaults of the
 *    fields the library knows, then struct_size = size), never more. Output structs
 *    (cz_model_info) only need struct_size set; the library writes only the fields that fit in it.
 *  - Fields are only ever appended: never removed, reordered, resized or retyped. Each appended
 *    field says in its comment which version added it ("since 0.2").
 *  - An appended field starts at or after sizeof(the struct of the previous version), never in
 *    its tail padding (the padding is named as a reserved field first, which must be 0), so every
 *    version has a larger sizeof than the one before and struct_size tells versions apart.
 *  - The value 0 of an appended field means "behave as the versions before it did", so a zeroed
 *    field is always safe.
 *  - A struct_size smaller than the first published version of the struct, or between the
 *    sizes of two versions, is refused (CZ_INVALID_ARGUMENT). Fields beyond struct_size take their defaults, so a program compiled
 *    against an older header keeps working with a newer library. A struct_size larger than the
 *    library knows (a program compiled against a newer header) is accepted when the bytes the
 *    library does not know are all 0; otherwise the call fails with CZ_INVALID_ARGUMENT naming
 *    the offset, since the caller asked for something this library cannot do. Sizes above
 *    CZ_MAX_STRUCT_SIZE are refused.
 *  - CZ_VERSION_MAJOR changes only when these promises are broken. Functions are never removed
 *    from the library within one major version (the SONAME libcoalesce.so.MAJOR).
 *  - Deprecated (0.2): cz_engine_default_options() and cz_generate_default_params() returned
 *    their structs BY VALUE. A caller compiled against an older, smaller struct reserves a smaller
 *    return slot than a newer library writes, so they cannot survive an appended field. They are
 *    now inline wrappers in this header over the *_init functions (so they fill the struct the
 *    caller was compiled with), marked deprecated, and will be removed from the header in 1.0.
 *    The library keeps exporting the two symbols for programs built against 0.1; they return
 *    the 0.1 layouts, frozen. See CHANGELOG.md.
 *  - Deprecated (0.3): cz_blas_core() (generation no longer uses OpenBLAS; it returns "none").
 *  - A deprecation never breaks a build that says which version it was written for: define
 *    CZ_VERSION_MIN_REQUIRED (section Version below) and the calls deprecated after that version
 *    compile without warnings, also under -Werror.
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
#define CZ_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#define CZ_API
#define CZ_DEPRECATED(msg)
#endif

#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)
#define CZ_INLINE static inline
#elif defined(__GNUC__) || defined(__clang__)
#define CZ_INLINE static __inline__
#else
#define CZ_INLINE static
#endif

/* ---- Version ------------------------------------------------------------------------------ */

#define CZ_VERSION_MAJOR 0
#define CZ_VERSION_MINOR 3
#define CZ_VERSION_PATCH 0
#define CZ_VERSION_STRING "0.3.0"
/* Single number for #if comparisons: major * 10000 + minor * 100 + patch. */
#define CZ_VERSION_NUMBER (CZ_VERSION_MAJOR * 10000 + CZ_VERSION_MINOR * 100 + CZ_VERSION_PATCH)

/* Released versions, as CZ_VERSION_NUMBER values, for CZ_VERSION_MIN_REQUIRED. */
#define CZ_VERSION_0_1 100
#define CZ_VERSION_0_2 200
#define CZ_VERSION_0_3 300

/* CZ_VERSION_MIN_REQUIRED: the oldest libcoalesce this program is written for (default: this
 * header's version). A call deprecated in a LATER version than that compiles without a
 * deprecation warning, so a program written for 0.1 keeps building with -Werror once it says so:
 *     #define CZ_VERSION_MIN_REQUIRED CZ_VERSION_0_1
 *     #include <coalesce.h>
 * (or -DCZ_VERSION_MIN_REQUIRED=100). Raising it brings the warnings back, which is how a program
 * finds what to move off. CZ_NO_DEPRECATED hides the deprecated calls altogether. */
#ifndef CZ_VERSION_MIN_REQUIRED
#define CZ_VERSION_MIN_REQUIRED CZ_VERSION_NUMBER
#endif
#if CZ_VERSION_MIN_REQUIRED >= CZ_VERSION_0_2
#define CZ_DEPRECATED_IN_0_2(msg) CZ_DEPRECATED(msg)
#else
#define CZ_DEPRECATED_IN_0_2(msg)
#endif
#if CZ_VERSION_MIN_REQUIRED >= CZ_VERSION_0_3
#define CZ_DEPRECATED_IN_0_3(msg) CZ_DEPRECATED(msg)
#else
#define CZ_DEPRECATED_IN_0_3(msg)
#endif

/* The library's version as "MAJOR.MINOR.PATCH" (static string, valid forever). Compare with
 * CZ_VERSION_STRING to detect a header/library mismatch. */
CZ_API const char *cz_version(void);
/* The library's CZ_VERSION_NUMBER. */
CZ_API int cz_version_number(void);

/* ---- Status codes (same numbering as coalesce_backend.h and the daemon's wire codes) ------- */

typedef enum {
    CZ_OK = 0,                  /* success */
    CZ_INVALID_ARGUMENT = 1,    /* caller error: NULL pointer, size <= 0, bad count/steps, bad
                                   struct_size, bad index, a path that is not a regular file;
                                   the message says which argument */
    CZ_NOT_FOUND = 2,           /* unknown model name, missing model directory, config or plugin */
    CZ_RESOURCE_EXHAUSTED = 3,  /* out of memory, or a limit (batch size, queue) was reached */
    CZ_CANCELLED = 4,           /* the progress callback returned 0 */
    CZ_DEADLINE_EXCEEDED = 5,   /* cz_generate_params.timeout_ms elapsed before the images were done */
    CZ_INTERNAL = 6,            /* a bug or an unexpected failure (backend crash report, I/O error
                                   writing a PNG, ...); the message says what */
    CZ_UNAVAILABLE = 7          /* the model is being unloaded / the engine is shutting down; retry */
} cz_status;

/* Name of a status code, e.g. "CZ_NOT_FOUND" (static string; "CZ_UNKNOWN_STATUS" for any other
 * int). */
CZ_API const char *cz_status_string(int status);

/* Largest struct_size any struct of this API accepts (a guard against uninitialised sizes). */
#define CZ_MAX_STRUCT_SIZE 65536

/* ---- Engine ------------------------------------------------------------------------------- */

typedef struct cz_engine cz_engine;             /* opaque; see OWNERSHIP */
typedef struct cz_image_batch cz_image_batch;   /* opaque; see OWNERSHIP */

/* Log levels passed to a cz_log_fn. */
#define CZ_LOG_ERROR 1
#define CZ_LOG_WARNING 2
#define CZ_LOG_INFO 3
#define CZ_LOG_DEBUG 4

/* Receives the engine's log lines (model loads, hot swaps, failures): level is one of
 * CZ_LOG_*, message a NUL-terminated UTF-8 line valid only during the call. Called on the thread
 * that made the library call, possibly from several threads at once; must not call back into
 * the library. */
typedef void (*cz_log_fn)(int level, const char *message, void *user_data);

typedef struct {
    uint32_t struct_size;     /* sizeof(cz_engine_options) as the caller compiled it; set by
                                 cz_engine_options_init */
    const char *plugin_dir;   /* directory holding backend plugins (*.so). Default: the
                                 COALESCE_PLUGIN_DIR environment variable, else
                                 <dir of libcoalesce.so>/coalesce/backends, else the directory of
                                 libcoalesce.so itself (a build tree). NULL = that default. */
    const char *models_dir;   /* model repository: cz_model_load(eng, name, NULL) loads
                                 <models_dir>/<name>. Default: COALESCE_MODELS_DIR, else
                                 <dir of libcoalesce.so>/../share/coalesce/models. NULL = default. */
    int32_t threads;          /* compute threads per generate call, 0..4096; 0 = the backend's
                                 default (one per online core, or COALESCE_THREADS). A value for
                                 this engine only, passed to the backend with every request
                                 (backend ABI 1.2); a backend built before ABI 1.2 uses its
                                 default. The environment is not touched. */
    int32_t preload;          /* nonzero: cz_engine_create loads every model under models_dir
                                 (failures are skipped, not fatal). Default 0. */
    /* ---- since 0.2 ---- */
    cz_log_fn log;            /* may be NULL (default): then the library logs nothing, unless
                                 COALESCE_LOG=debug|info|warning|error is set (lines on stderr).
                                 Non-NULL: every log line of this engine, all levels. */
    void *log_user_data;      /* passed to log unchanged */
} cz_engine_options;

/* Fills *opts with the defaults: writes exactly `size` bytes (pass sizeof *opts), see ABI
 * STABILITY. The path strings point into library-owned static storage, valid until the library
 * is unloaded. Errors: CZ_INVALID_ARGUMENT (opts NULL, size smaller than the 0.1 struct or
 * above CZ_MAX_STRUCT_SIZE; nothing is written). */
CZ_API cz_status cz_engine_options_init(cz_engine_options *opts, size_t size);

/* Creates an engine. opts may be NULL (= defaults). On success *out receives the engine (free it
 * with cz_engine_free) and CZ_OK is returned; on failure *out is set to NULL and the message is
 * read with cz_engine_errmsg(NULL). */
CZ_API cz_status cz_engine_create(const cz_engine_options *opts, cz_engine **out /* out */);

/* Unloads every model and frees the engine. No other call on this engine may be running or
 * start afterwards. Image batches it produced stay valid. NULL (or an engine already freed) is a
 * no-op. */
CZ_API void cz_engine_free(cz_engine *engine);

/* Message for the last failed call on `engine` from the calling thread ("" if that call
 * succeeded or there was none). engine == NULL: the calling thread's last handle-less call.
 * Owned by the library; valid until the next call on the same engine from the same thread.
 * Never returns NULL. */
CZ_API const char *cz_engine_errmsg(const cz_engine *engine);

/* Names of the models loaded on the engine, sorted (bytewise). On success *names_out receives a
 * NULL-terminated array of NUL-terminated strings (an array holding only NULL when nothing is
 * loaded), which the caller frees with cz_string_list_free, and *count_out (may be NULL) the
 * number of names. On failure *names_out is set to NULL. A snapshot: loads and unloads on other
 * threads do not change it. */
CZ_API cz_status cz_engine_list_models(cz_engine *engine, char ***names_out /* out */,
                                       size_t *count_out /* out, may be NULL */);

/* ---- Models ------------------------------------------------------------------------------- */

/* Loads the model in directory model_dir (holding config.json, which names its backend, and the
 * weights) under `name`. model_dir NULL = <models_dir>/<name>. Loading a name already loaded
 * replaces it (hot swap: the new one is loaded first; if that fails the old one keeps serving).
 * Names (and the last component of model_dir) must match [A-Za-z0-9][A-Za-z0-9._-]* (at most
 * 128 bytes), the rule of the model repository.
 * Every load is validated: config.json must be a JSON object of at most 1 MiB whose "backend"
 * is a backend name; the fields every backend shares are checked for type and range
 * ("default_steps": an integer in 1..CZ_MAX_STEPS, "revision": a string, "weights": a file name
 * in the model directory), each *.safetensors file in the model directory must be well formed
 * and hold only finite floating-point values, and the backend checks its own fields; the
 * message names the field or the file and tensor.
 * Errors: CZ_INVALID_ARGUMENT (NULL/empty/bad name, bad config.json, bad field, non-finite
 * weights), CZ_NOT_FOUND (directory, config.json, backend plugin), CZ_INTERNAL (the plugin or
 * backend refused the model; the message carries its reason). */
CZ_API cz_status cz_model_load(cz_engine *engine, const char *name, const char *model_dir);

/* Unloads `name`; generate calls already running on it finish first. CZ_NOT_FOUND if not loaded.
 * The backend's model is destroyed, but backend plugin files, once used, stay loaded until the
 * process exits: unmapping a plugin whose runtime left threads behind would crash the host. */
CZ_API cz_status cz_model_unload(cz_engine *engine, const char *name);

/* What a loaded model is, as plain fields (see cz_model_get_info). Strings are NUL-terminated
 * UTF-8, cut at a character boundary if longer than their array. */
typedef struct {
    uint32_t struct_size;      /* in: sizeof(cz_model_info) as the caller compiled it */
    int32_t height;            /* image size in pixels */
    int32_t width;
    int32_t channels;          /* 1 = grayscale, 3 = RGB */
    int32_t default_steps;     /* steps used when cz_generate_params.steps is 0 */
    int32_t max_steps;         /* largest steps the model accepts */
    int32_t max_batch;         /* largest count one backend call takes (the engine splits more) */
    int32_t supports_guidance; /* 1 if cz_generate_params.guidance has an effect, else 0 */
    uint64_t generation;       /* load number: changes on every hot swap of this name */
    char backend[64];          /* backend name, e.g. "coalescer" */
    char backend_version[64];  /* the backend plugin's version string */
    char revision[128];        /* the model's revision: its config's "revision" where it sets one,
                                  else "content-" and 16 hex digits of a hash of config.json and
                                  the weights file it names (other files in the folder are not
                                  read); the same files give the same revision on every machine */
} cz_model_info;

/* Fills *info for the loaded model `name`. Set info->struct_size = sizeof *info first; the
 * library writes only the fields that fit in struct_size. Errors: CZ_INVALID_ARGUMENT (NULL,
 * bad struct_size), CZ_NOT_FOUND (not loaded). */
CZ_API cz_status cz_model_get_info(cz_engine *engine, const char *name, cz_model_info *info /* in/out */);

/* The backend's JSON description of a loaded model ({"backend":..., "height":28, "width":28,
 * "channels":1, "default_steps":..., ...}), for what cz_model_info does not carry: the class
 * names, and "default_guidance" (the guidance a request with guidance 0 gets; only for models
 * with guidance). On success *json_out receives a NUL-terminated copy that the caller frees with
 * cz_string_free. */
CZ_API cz_status cz_model_describe(cz_engine *engine, const char *name, char **json_out /* out */);

/* Frees a string allocated by the library for the caller. NULL is a no-op. */
CZ_API void cz_string_free(char *s);

/* Frees a NULL-terminated string array from cz_engine_list_models (the strings and the array).
 * NULL is a no-op. */
CZ_API void cz_string_list_free(char **list);

/* ---- Generation --------------------------------------------------------------------------- */

/* Progress callback, per cz_generate call. step counts 1..total (network evaluations). Return
 * nonzero to continue, 0 to cancel: cz_generate then returns CZ_CANCELLED as soon as the backend
 * can stop. Called on the thread that called cz_generate, never after cz_generate returns. */
typedef int (*cz_progress_fn)(int step, int total, void *user_data);

/* The generation limits. They equal the engine's (EngineLimits in Sources/Engine, checked against
 * this header by a test), and every face (this library, the daemon, the CLI, Python) refuses a
 * request outside them with CZ_INVALID_ARGUMENT and the same message. */
/* Largest `count` one cz_generate call accepts. */
#define CZ_MAX_COUNT 4096
/* Largest `steps` one cz_generate call accepts; a model may allow fewer (its max_steps). 64 since
 * 0.3.0 (10000 before, but every backend already refused more than 64). */
#define CZ_MAX_STEPS 64
/* Longest prompt, in UTF-8 bytes (the daemon's default limit, so every face accepts the same). */
#define CZ_MAX_PROMPT_BYTES 1024
/* Largest `guidance` (since 0.3.0): a request's guidance is a finite number in 0..CZ_MAX_GUIDANCE,
 * for every model (also those without guidance, which ignore it). */
#define CZ_MAX_GUIDANCE 100

typedef struct {
    uint32_t struct_size;     /* sizeof(cz_generate_params) as the caller compiled it; set by
                                 cz_generate_params_init */
    const char *model;        /* required: name of a loaded model */
    const char *prompt;       /* UTF-8, at most CZ_MAX_PROMPT_BYTES; NULL or "" = unconditional */
    uint64_t seed;            /* image i of the batch uses seed + i (default 0) */
    int32_t steps;            /* network evaluations: 1..the model's max_steps; 0 = the model's
                                 default, -1 = "auto" where the backend has it (default 0) */
    int32_t count;            /* images: 1..CZ_MAX_COUNT, 0 = 1 (default 1); more than the model's
                                 max_batch run as several backend calls of max_batch images, one
                                 after another, image i keeping seed + i (the same bytes as asking
                                 part by part); progress then counts over all of them */
    float guidance;           /* classifier-free guidance scale, 0..CZ_MAX_GUIDANCE; 0 = the
                                 model's default; ignored where the backend has none (default 0) */
    cz_progress_fn progress;  /* may be NULL */
    void *user_data;          /* passed to progress unchanged; not touched by the library */
    uint32_t timeout_ms;      /* 0 = no deadline; else CZ_DEADLINE_EXCEEDED once it has passed
                                 (checked before the start and at each progress step) */
} cz_generate_params;

/* Fills *params with the defaults (see each field): writes exactly `size` bytes (pass
 * sizeof *params), see ABI STABILITY. Errors: CZ_INVALID_ARGUMENT (params NULL, size smaller
 * than the 0.1 struct or above CZ_MAX_STRUCT_SIZE; nothing is written). */
CZ_API cz_status cz_generate_params_init(cz_generate_params *params, size_t size);

/* Generates params->count images. On success *out receives a batch the caller frees with
 * cz_image_batch_free. On failure *out is set to NULL and the status says why (message from
 * cz_engine_errmsg(engine)). The images are a pure function of (model, prompt, seed, steps,
 * guidance): the same inputs give the same pixels in every process and every face (see
 * REPRODUCIBILITY). */
CZ_API cz_status cz_generate(cz_engine *engine, const cz_generate_params *params,
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

/* Writes image `index` of the batch to `path` as an 8-bit PNG. What happens depends on what is
 * at `path` (looked at with lstat, never followed):
 *  - nothing: the PNG is written to a temporary file in the same directory, which is then
 *    linked to `path` (if something appeared there meanwhile the call fails, nothing replaced);
 *  - a regular file owned by the calling user (effective uid) with one link: replaced
 *    atomically (temporary file + rename); the new file keeps the old one's permission bits;
 *  - a regular file with several hard links, or owned by another user: written through
 *    (truncated and rewritten in place, not atomically), so every link sees the new image and
 *    owner, mode and links stay as they were;
 *  - anything else (a symbolic link, FIFO, socket, device, directory): refused with
 *    CZ_INVALID_ARGUMENT and a message naming the kind; nothing is opened or replaced.
 * Errors: CZ_INVALID_ARGUMENT (NULL batch/path, bad index, not a regular file), CZ_NOT_FOUND
 * (directory missing), CZ_INTERNAL (other I/O failure); message via cz_engine_errmsg(NULL). */
CZ_API cz_status cz_image_write_png(const cz_image_batch *batch, int index, const char *path);

/* ---- Diagnostics -------------------------------------------------------------------------- */

/* The instruction set Coalesce's kernels run on in this process: "avx512", "avx2" or "scalar"
 * (the widest this CPU has, or less where the environment variable COALESCE_ISA, read once, says
 * "avx2" or "scalar"). "avx512" and "avx2" give the same pixels (REPRODUCIBILITY). Static string.
 * Since 0.3. */
CZ_API const char *cz_kernel_isa(void);

/* ---- Deprecated (removed from this header in 1.0; see ABI STABILITY and CHANGELOG.md) ------- */

#ifndef CZ_NO_DEPRECATED
/* Use cz_engine_options_init. Fills the struct this program was compiled with. Deprecated in 0.2. */
CZ_DEPRECATED_IN_0_2("use cz_engine_options_init(&opts, sizeof opts)")
CZ_INLINE cz_engine_options cz_engine_default_options(void) {
    cz_engine_options o;
    (void)cz_engine_options_init(&o, sizeof o);
    return o;
}

/* Use cz_generate_params_init. Fills the struct this program was compiled with. Deprecated in 0.2. */
CZ_DEPRECATED_IN_0_2("use cz_generate_params_init(&params, sizeof params)")
CZ_INLINE cz_generate_params cz_generate_default_params(void) {
    cz_generate_params p;
    (void)cz_generate_params_init(&p, sizeof p);
    return p;
}

/* Returns "none": generation no longer runs on OpenBLAS (0.3), so there is no BLAS core to
 * report, and the library no longer loads it. Use cz_kernel_isa. Deprecated in 0.3. */
CZ_DEPRECATED_IN_0_3("generation no longer uses OpenBLAS; use cz_kernel_isa()")
CZ_API const char *cz_blas_core(void);
#endif

#ifdef __cplusplus
}
#endif
#endif /* COALESCE_H */

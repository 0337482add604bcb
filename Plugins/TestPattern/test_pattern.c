/*
 * test_pattern.c — a tiny Coalesce backend in plain C (proves the ABI is C; used by tests).
 *
 * Model directory: <dir>/config.json must exist. Optional keys (flat JSON, read by a tiny scanner):
 *   "fail": true           create() fails with a message (tests the host's refusal path)
 *   "step_delay_ms": N     sleep N ms per fake step (tests cancel, deadlines, drain, batching)
 *   "revision": "..."      echoed by describe() (tests hot swap: which version served a request)
 *   "default_steps": N     steps used when the request says 0 or -1 (default 4)
 *   "require_threads": N   generate() fails unless the request's threads (ABI 1.2) is N (tests
 *                          that the host passes its thread count as a value)
 *   "chaos": true          magic prompts misbehave, to test backend isolation: "chaos:segv" writes
 *                          through a NULL pointer (SIGSEGV), "chaos:abort" calls abort(), "chaos:hang" sleeps forever without
 *                          reporting progress (a hung backend). Never set this for an in-process host.
 *   "crash_on_create": true  create() writes through a NULL pointer (a backend that crashes at load)
 * Every key present is checked for type and range; a bad one fails create() naming the key.
 *
 * Build-time variants (a plugin "rebuilt" for hot-swap tests): -DTP_VERSION='"2.0.0"' sets the
 * version string, -DTP_SALT=N changes every image (N = 0 is the default pattern).
 *
 * Images: 28x28x1 uint8. Image i of a request is a pattern (horizontal stripes, vertical
 * stripes or a checkerboard) whose period, phase and two intensities come from a 64-bit hash of
 * (seed + i, prompt). Deterministic, and independent of batching.
 *
 * Only cz_backend_entry is exported; everything else is static.
 */
#define _POSIX_C_SOURCE 200809L
#include "../../Include/coalesce_backend.h"
#include "../../Include/coalesce.h" /* CZ_MAX_STEPS only */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TP_H 28
#define TP_W 28
#define TP_C 1
#define TP_MAX_STEPS 64 /* every face's limit: CZ_MAX_STEPS, the engine's EngineLimits.stepLimit */
_Static_assert(TP_MAX_STEPS == CZ_MAX_STEPS, "test-pattern's step limit must be CZ_MAX_STEPS");
#define TP_MAX_BATCH 256
#define TP_MAX_CONFIG (64 * 1024)
/* sizeof(cz_backend_request) of ABI 1.0/1.1 hosts (before threads was appended). */
#define TP_REQUEST_SIZE_1_1 40

/* Build with -DTP_ABI_MINOR=0 to get a plugin without generate_batch (tests the host's
 * per-request fallback). */
#ifndef TP_VERSION
#define TP_VERSION "1.0.0"
#endif
#ifndef TP_SALT
#define TP_SALT 0
#endif

#ifndef TP_ABI_MINOR
#define TP_ABI_MINOR CZ_BACKEND_ABI_MINOR
#endif

struct cz_backend_model {
    int default_steps;
    int require_threads; /* -1 = any */
    int step_delay_ms;
    int chaos;
    char revision[128];
    char describe_json[1024];
};

/* A NULL the compiler cannot see through (the chaos crashes write through it). */
static volatile int *volatile tp_null = NULL;

static void tp_err(char *err, size_t cap, const char *fmt, ...) {
    if (err == NULL || cap == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Finds `"key"` followed by ':' in json; returns a pointer to the value (spaces skipped) or NULL. */
static const char *tp_json_value(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = json;
    while ((p = strstr(p, pat)) != NULL) {
        const char *q = p + strlen(pat);
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q == ':') {
            q++;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            return q;
        }
        p = q;
    }
    return NULL;
}

/* Reads boolean `key` into *out (unchanged when absent). Returns 0, or -1 when the value is not
 * true/false. */
static int tp_json_bool(const char *json, const char *key, int *out) {
    const char *v = tp_json_value(json, key);
    if (v == NULL) return 0;
    if (strncmp(v, "true", 4) == 0) { *out = 1; v += 4; }
    else if (strncmp(v, "false", 5) == 0) { *out = 0; v += 5; }
    else return -1;
    return (*v == ',' || *v == '}' || *v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') ? 0 : -1;
}

/* Reads integer `key` into *out (unchanged when absent). Returns 0, or -1 when the value is not
 * an integer in lo..hi (a string, a fraction, an exponent, out of range). */
static int tp_json_int(const char *json, const char *key, long lo, long hi, long *out) {
    const char *v = tp_json_value(json, key);
    if (v == NULL) return 0;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || errno != 0) return -1;
    if (!(*end == ',' || *end == '}' || *end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) return -1;
    if (x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

static void tp_json_string(const char *json, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    const char *v = tp_json_value(json, key);
    if (v == NULL || *v != '"') return;
    v++;
    size_t n = 0;
    /* Keep only plain characters so the value can be echoed into JSON safely. */
    while (*v && *v != '"' && n + 1 < cap) {
        char c = *v++;
        if (c >= 32 && c < 127 && c != '\\') out[n++] = c;
    }
    out[n] = '\0';
}

static cz_backend_model *tp_create(const char *model_dir, char *err, size_t err_cap) {
    if (model_dir == NULL) {
        tp_err(err, err_cap, "test-pattern: model_dir is NULL");
        return NULL;
    }
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", model_dir) >= (int)sizeof path) {
        tp_err(err, err_cap, "test-pattern: model directory path too long");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        tp_err(err, err_cap, "test-pattern: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *json = malloc(TP_MAX_CONFIG + 1);
    if (json == NULL) {
        fclose(f);
        tp_err(err, err_cap, "test-pattern: out of memory");
        return NULL;
    }
    size_t n = fread(json, 1, TP_MAX_CONFIG, f);
    fclose(f);
    json[n] = '\0';

    int fail = 0, chaos = 0, crash_on_create = 0;
    long steps = 4, delay = 0, threads = -1;
    const char *bad = NULL;
    if (tp_json_bool(json, "fail", &fail) != 0) bad = "\"fail\" must be true or false";
    else if (tp_json_bool(json, "chaos", &chaos) != 0) bad = "\"chaos\" must be true or false";
    else if (tp_json_bool(json, "crash_on_create", &crash_on_create) != 0)
        bad = "\"crash_on_create\" must be true or false";
    else if (tp_json_int(json, "default_steps", 1, TP_MAX_STEPS, &steps) != 0)
        bad = "\"default_steps\" must be an integer in 1...64";
    else if (tp_json_int(json, "step_delay_ms", 0, 10000, &delay) != 0)
        bad = "\"step_delay_ms\" must be an integer in 0...10000";
    else if (tp_json_int(json, "require_threads", 0, 4096, &threads) != 0)
        bad = "\"require_threads\" must be an integer in 0...4096";
    else if (tp_json_value(json, "revision") != NULL && *tp_json_value(json, "revision") != '"')
        bad = "\"revision\" must be a string";
    if (bad != NULL) {
        free(json);
        tp_err(err, err_cap, "test-pattern: config.json: %s", bad);
        return NULL;
    }
    if (fail) {
        free(json);
        tp_err(err, err_cap, "test-pattern: config.json asks create() to fail (\"fail\": true)");
        return NULL;
    }
    if (crash_on_create) {
        free(json);
        *(volatile int *)tp_null = 1;
    }
    cz_backend_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        free(json);
        tp_err(err, err_cap, "test-pattern: out of memory");
        return NULL;
    }
    m->require_threads = (int)threads;
    m->default_steps = (int)steps;
    m->step_delay_ms = (int)delay;
    m->chaos = chaos;
    tp_json_string(json, "revision", m->revision, sizeof m->revision);
    free(json);
    snprintf(m->describe_json, sizeof m->describe_json,
             "{\"backend\":\"test-pattern\",\"height\":%d,\"width\":%d,\"channels\":%d,"
             "\"default_steps\":%d,\"max_steps\":%d,\"max_batch\":%d,\"supports_guidance\":false,"
             "\"revision\":\"%s\",\"classes\":[]}",
             TP_H, TP_W, TP_C, m->default_steps, TP_MAX_STEPS, TP_MAX_BATCH, m->revision);
    return m;
}

static const char *tp_describe(cz_backend_model *model) {
    return model == NULL ? "{}" : model->describe_json;
}

static uint64_t tp_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t tp_fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (uint8_t)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Draws one 28x28 image for (seed, prompt hash) into out. */
static void tp_draw(uint8_t *out, uint64_t seed, uint64_t prompt_hash) {
    uint64_t h = tp_splitmix64(seed ^ tp_splitmix64(prompt_hash) ^ (uint64_t)TP_SALT);
    int kind = (int)(h % 3);                 /* 0 rows, 1 columns, 2 checker */
    int period = 2 + (int)((h >> 8) % 6);    /* 2..7 pixels per band */
    int phase = (int)((h >> 16) % (uint64_t)period);
    uint8_t hi = (uint8_t)(128 + ((h >> 24) % 128));
    uint8_t lo = (uint8_t)((h >> 32) % 64);
    for (int y = 0; y < TP_H; y++) {
        for (int x = 0; x < TP_W; x++) {
            int by = (y + phase) / period, bx = (x + phase) / period;
            int on = kind == 0 ? (by & 1) : kind == 1 ? (bx & 1) : ((bx + by) & 1);
            out[y * TP_W + x] = on ? hi : lo;
        }
    }
}

static void tp_sleep_ms(int ms) {
    if (ms <= 0) return;
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int tp_validate(const cz_backend_model *m, const cz_backend_request *r, int *steps_out,
                       char *err, size_t err_cap) {
    if (r->struct_size < TP_REQUEST_SIZE_1_1) {
        tp_err(err, err_cap, "test-pattern: request struct_size %u < %d", r->struct_size,
               TP_REQUEST_SIZE_1_1);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    /* threads exists from ABI 1.2 (struct_size 48) on; older hosts leave it to the default. */
    int threads = r->struct_size >= sizeof(cz_backend_request) ? r->threads : 0;
    if (threads < 0 || threads > 4096) {
        tp_err(err, err_cap, "test-pattern: threads must be in 0...4096, got %d", threads);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    if (m->require_threads >= 0 && threads != m->require_threads) {
        tp_err(err, err_cap, "test-pattern: request threads is %d, config.json requires %d", threads,
               m->require_threads);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    if (r->prompt == NULL) {
        tp_err(err, err_cap, "test-pattern: prompt is NULL (use \"\" for unconditional)");
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    if (r->count < 1 || r->count > TP_MAX_BATCH) {
        tp_err(err, err_cap, "test-pattern: count must be in 1...%d, got %d", TP_MAX_BATCH, r->count);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    int steps = r->steps;
    if (steps == 0 || steps == -1) steps = m->default_steps;
    if (steps < 1 || steps > TP_MAX_STEPS) {
        tp_err(err, err_cap, "test-pattern: steps must be in 1...%d (or 0/-1 for the default), got %d",
               TP_MAX_STEPS, r->steps);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    *steps_out = steps;
    return CZ_BACKEND_OK;
}

static int tp_generate_batch(cz_backend_model *model, const cz_backend_request *reqs, int32_t n_reqs,
                             uint8_t *pixels, size_t pixels_cap,
                             cz_backend_progress_fn progress, void *user_data,
                             char *err, size_t err_cap) {
    if (model == NULL || reqs == NULL || pixels == NULL) {
        tp_err(err, err_cap, "test-pattern: model, reqs and pixels must not be NULL");
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    if (n_reqs < 1) {
        tp_err(err, err_cap, "test-pattern: n_reqs must be >= 1, got %d", n_reqs);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    int steps = 0;
    size_t total = 0;
    for (int32_t k = 0; k < n_reqs; k++) {
        int s = 0;
        int rc = tp_validate(model, &reqs[k], &s, err, err_cap);
        if (rc != CZ_BACKEND_OK) return rc;
        if (k == 0) steps = s;
        else if (s != steps) {
            tp_err(err, err_cap, "test-pattern: batched requests must share steps (%d vs %d)", steps, s);
            return CZ_BACKEND_INVALID_ARGUMENT;
        }
        total += (size_t)reqs[k].count;
    }
    if (total > TP_MAX_BATCH) {
        tp_err(err, err_cap, "test-pattern: batch of %zu images exceeds max_batch %d", total, TP_MAX_BATCH);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    const size_t image_bytes = (size_t)TP_H * TP_W * TP_C;
    if (pixels_cap < total * image_bytes) {
        tp_err(err, err_cap, "test-pattern: pixels_cap %zu < %zu needed", pixels_cap, total * image_bytes);
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    if (model->chaos) {
        for (int32_t k = 0; k < n_reqs; k++) {
            if (strcmp(reqs[k].prompt, "chaos:segv") == 0) *(volatile int *)tp_null = 1;
            if (strcmp(reqs[k].prompt, "chaos:abort") == 0) abort();
            if (strcmp(reqs[k].prompt, "chaos:hang") == 0) for (;;) tp_sleep_ms(1000);
        }
    }
    for (int s = 1; s <= steps; s++) {
        tp_sleep_ms(model->step_delay_ms);
        if (progress != NULL && progress(s, steps, user_data) == 0) {
            tp_err(err, err_cap, "test-pattern: cancelled at step %d of %d", s, steps);
            return CZ_BACKEND_CANCELLED;
        }
    }
    uint8_t *out = pixels;
    for (int32_t k = 0; k < n_reqs; k++) {
        uint64_t ph = tp_fnv1a(reqs[k].prompt);
        for (int32_t i = 0; i < reqs[k].count; i++) {
            tp_draw(out, reqs[k].seed + (uint64_t)i, ph);
            out += image_bytes;
        }
    }
    return CZ_BACKEND_OK;
}

static int tp_generate(cz_backend_model *model, const cz_backend_request *req,
                       uint8_t *pixels, size_t pixels_cap,
                       cz_backend_progress_fn progress, void *user_data,
                       char *err, size_t err_cap) {
    if (req == NULL) {
        tp_err(err, err_cap, "test-pattern: req is NULL");
        return CZ_BACKEND_INVALID_ARGUMENT;
    }
    return tp_generate_batch(model, req, 1, pixels, pixels_cap, progress, user_data, err, err_cap);
}

static void tp_destroy(cz_backend_model *model) {
    free(model);
}

static const cz_backend_vtable tp_vtable = {
    .abi_major = CZ_BACKEND_ABI_MAJOR,
    .abi_minor = TP_ABI_MINOR,
    .name = "test-pattern",
    .version = TP_VERSION,
    .create = tp_create,
    .describe = tp_describe,
    .generate = tp_generate,
    .destroy = tp_destroy,
    .generate_batch = TP_ABI_MINOR >= 1 ? tp_generate_batch : NULL,
};

__attribute__((visibility("default"))) const cz_backend_vtable *cz_backend_entry(void) {
    return &tp_vtable;
}

/*
 * test_api.c — checks libcoalesce's C contract from plain C: bad input returns a status and a
 * message (never a crash), ownership rules hold, and many create/load/generate/free cycles
 * leave nothing behind (run it under valgrind: `make test-leaks`).
 *
 *     gcc -std=c99 -Wall -o test_api test_api.c $(pkg-config --cflags --libs coalesce) -lpthread
 *     ./test_api MODEL_DIR [CYCLES]
 *
 *     ./test_api MODEL_DIR CYCLES EMPTY_LOADS   (also: EMPTY_LOADS loads of an empty config.json,
 *                                              RSS must not grow; run natively, not under valgrind)
 *
 * MODEL_DIR is a test-pattern model directory (models/test-pattern). Exit status 0 = all passed.
 */
#define _POSIX_C_SOURCE 200809L
/* Written for 0.2: it still checks cz_blas_core, deprecated in 0.3. */
#define CZ_VERSION_MIN_REQUIRED CZ_VERSION_0_2
#include <coalesce.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

/* Expects status `want` from `rc` and a non-empty message from `msg`. */
#define EXPECT_STATUS(rc, want, msg)                                                       \
    do {                                                                                   \
        int rc_ = (rc);                                                                    \
        const char *m_ = (msg);                                                            \
        CHECK(rc_ == (want), "got %s, want %s (%s)", cz_status_string(rc_),                \
              cz_status_string(want), m_ ? m_ : "(null)");                                 \
        CHECK(m_ != NULL && m_[0] != 0, "empty message for %s", cz_status_string(want));   \
    } while (0)

static const char *g_model_dir;

/* The defaults, through the ABI-safe initialisers. */
static cz_engine_options opts_defaults(void) {
    cz_engine_options o;
    int rc = cz_engine_options_init(&o, sizeof o);
    CHECK(rc == CZ_OK, "cz_engine_options_init: %s", cz_engine_errmsg(NULL));
    return o;
}

static cz_generate_params params_defaults(void) {
    cz_generate_params p;
    int rc = cz_generate_params_init(&p, sizeof p);
    CHECK(rc == CZ_OK, "cz_generate_params_init: %s", cz_engine_errmsg(NULL));
    return p;
}

static cz_engine *make_engine(void) {
    cz_engine *eng = NULL;
    cz_engine_options o = opts_defaults();
    int rc = cz_engine_create(&o, &eng);
    CHECK(rc == CZ_OK && eng != NULL, "cz_engine_create: %s", cz_engine_errmsg(NULL));
    return eng;
}

static int cancel_at_2(int step, int total, void *ud) {
    (void)total;
    (*(int *)ud)++;
    return step < 2;
}

static void test_version_and_strings(void) {
    CHECK(strcmp(cz_version(), CZ_VERSION_STRING) == 0, "version %s", cz_version());
    CHECK(cz_version_number() == CZ_VERSION_NUMBER, "version number %d", cz_version_number());
    CHECK(strcmp(cz_status_string(CZ_NOT_FOUND), "CZ_NOT_FOUND") == 0, "%s", cz_status_string(2));
    CHECK(strcmp(cz_status_string(-5), "CZ_UNKNOWN_STATUS") == 0, "%s", cz_status_string(-5));
    CHECK(strcmp(cz_status_string(1000), "CZ_UNKNOWN_STATUS") == 0, "%s", cz_status_string(1000));
    CHECK(cz_engine_errmsg(NULL) != NULL, "errmsg(NULL) is NULL");
}

/* The limits of coalesce.h are the ones enforced: a request at each bound succeeds, one just
 * above is CZ_INVALID_ARGUMENT with the engine's message (the daemon's test_daemon.py expects
 * the same words for the same requests). */
static void test_limits_at_their_bounds(void) {
    cz_engine *eng = make_engine();
    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    cz_image_batch *b = NULL;
    cz_generate_params p = params_defaults();
    p.model = "tp";
    p.steps = CZ_MAX_STEPS;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK && b, "steps CZ_MAX_STEPS: %s", cz_engine_errmsg(eng));
    cz_image_batch_free(b);
    b = NULL;
    p.steps = CZ_MAX_STEPS + 1;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strcmp(cz_engine_errmsg(eng), "steps must be in 1...64, or 0 for the default (4) or -1 for auto; got 65") == 0,
          "steps message: %s", cz_engine_errmsg(eng));
    p.steps = 0;
    p.guidance = CZ_MAX_GUIDANCE;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK && b, "guidance CZ_MAX_GUIDANCE: %s", cz_engine_errmsg(eng));
    cz_image_batch_free(b);
    b = NULL;
    p.guidance = CZ_MAX_GUIDANCE + 0.5f;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strcmp(cz_engine_errmsg(eng), "guidance must be a finite number in 0...100 (0 = the model's default), got 100.5") == 0,
          "guidance message: %s", cz_engine_errmsg(eng));
    p.guidance = -0.5f;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(b == NULL, "batch out not cleared");
    p.guidance = 0;
    char prompt[CZ_MAX_PROMPT_BYTES + 2];
    memset(prompt, 'p', CZ_MAX_PROMPT_BYTES);
    prompt[CZ_MAX_PROMPT_BYTES] = 0;
    p.prompt = prompt;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK && b, "prompt of CZ_MAX_PROMPT_BYTES: %s", cz_engine_errmsg(eng));
    cz_image_batch_free(b);
    b = NULL;
    prompt[CZ_MAX_PROMPT_BYTES] = 'p';
    prompt[CZ_MAX_PROMPT_BYTES + 1] = 0;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strcmp(cz_engine_errmsg(eng), "prompt is longer than 1024 bytes") == 0, "prompt message: %s", cz_engine_errmsg(eng));
    cz_engine_free(eng);
}

static void test_null_and_bad_input(void) {
    /* Frees of NULL are no-ops. */
    cz_engine_free(NULL);
    cz_image_batch_free(NULL);
    cz_string_free(NULL);
    /* Accessors on NULL. */
    CHECK(cz_image_batch_count(NULL) == 0, "count(NULL)");
    CHECK(cz_image_batch_pixels(NULL, 0) == NULL, "pixels(NULL)");
    CHECK(cz_image_batch_seed(NULL, 0) == 0, "seed(NULL)");

    EXPECT_STATUS(cz_engine_create(NULL, NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    cz_engine_options bad = opts_defaults();
    bad.struct_size = 3;
    cz_engine *e = (cz_engine *)0x1;
    EXPECT_STATUS(cz_engine_create(&bad, &e), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(e == NULL, "out not cleared on failure");
    bad = opts_defaults();
    bad.plugin_dir = "/nonexistent/plugins";
    EXPECT_STATUS(cz_engine_create(&bad, &e), CZ_NOT_FOUND, cz_engine_errmsg(NULL));
    bad = opts_defaults();
    bad.threads = -3;
    EXPECT_STATUS(cz_engine_create(&bad, &e), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));

    EXPECT_STATUS(cz_model_load(NULL, "x", NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_model_unload(NULL, "x"), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_generate(NULL, NULL, NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_image_write_png(NULL, 0, "/tmp/x.png"), CZ_INVALID_ARGUMENT,
                  cz_engine_errmsg(NULL));

    cz_engine *eng = make_engine();
    if (!eng) return;
    CHECK(strcmp(cz_engine_errmsg(eng), "") == 0, "fresh engine has message %s", cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_load(eng, NULL, NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_load(eng, "", NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_load(eng, "m", "/nonexistent/model"), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_load(eng, "no-such-model", NULL), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_unload(eng, "never-loaded"), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    char *json = (char *)0x1;
    EXPECT_STATUS(cz_model_describe(eng, "never-loaded", &json), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    CHECK(json == NULL, "describe out not cleared");
    EXPECT_STATUS(cz_model_describe(eng, "x", NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));

    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    CHECK(strcmp(cz_engine_errmsg(eng), "") == 0, "message not cleared by success");

    cz_image_batch *b = (cz_image_batch *)0x1;
    cz_generate_params p = params_defaults();
    EXPECT_STATUS(cz_generate(eng, NULL, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(b == NULL, "batch out not cleared");
    p.model = "tp";
    EXPECT_STATUS(cz_generate(eng, &p, NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    p.model = NULL;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    p.model = "unknown-model";
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    CHECK(strstr(cz_engine_errmsg(eng), "unknown-model") != NULL, "message does not name the model: %s",
          cz_engine_errmsg(eng));
    p = params_defaults();
    p.model = "tp";
    int counts[] = {-1, -2147483647 - 1, CZ_MAX_COUNT + 1, 2147483647};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        p.count = counts[i];
        EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    }
    /* count 0 is the default, one image (as on the daemon's wire) */
    p.count = 0;
    b = NULL;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK, "count 0: %s", cz_engine_errmsg(eng));
    CHECK(b != NULL && cz_image_batch_count(b) == 1, "count 0 gave %d images", b ? cz_image_batch_count(b) : -1);
    cz_image_batch_free(b);
    b = NULL;
    p.count = 1;
    int steps[] = {-2, CZ_MAX_STEPS + 1, 2147483647};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        p.steps = steps[i];
        EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    }
    p = params_defaults();
    p.model = "tp";
    p.struct_size = 8;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    /* Strings must be valid UTF-8: never repaired, never looked up. */
    p = params_defaults();
    p.model = "tp";
    p.prompt = "ab\xff\xfe";
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strstr(cz_engine_errmsg(eng), "prompt") != NULL, "message does not name the prompt: %s", cz_engine_errmsg(eng));
    p.prompt = "\xc0\x80"; /* overlong NUL */
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    p.prompt = NULL;
    p.model = "tp\xff";
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strstr(cz_engine_errmsg(eng), "model") != NULL, "message does not name the model: %s", cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_load(eng, "tp\xff", g_model_dir), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));

    /* A good call, then bad accessors and PNG paths. */
    p = params_defaults();
    p.model = "tp";
    p.count = 2;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK && b, "generate: %s", cz_engine_errmsg(eng));
    if (b) {
        CHECK(cz_image_batch_count(b) == 2, "count %d", cz_image_batch_count(b));
        CHECK(cz_image_batch_pixels(b, -1) == NULL, "pixels(-1)");
        CHECK(cz_image_batch_pixels(b, 2) == NULL, "pixels(2)");
        CHECK(cz_image_batch_pixels(b, 1) == cz_image_batch_pixels(b, 0) + 28 * 28, "contiguous");
        CHECK(cz_image_batch_seed(b, 1) == 1, "seed(1) = %llu", (unsigned long long)cz_image_batch_seed(b, 1));
        EXPECT_STATUS(cz_image_write_png(b, 5, "/tmp/x.png"), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
        EXPECT_STATUS(cz_image_write_png(b, -1, "/tmp/x.png"), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
        EXPECT_STATUS(cz_image_write_png(b, 0, NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
        EXPECT_STATUS(cz_image_write_png(b, 0, ""), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
        EXPECT_STATUS(cz_image_write_png(b, 0, "/nonexistent/dir/x.png"), CZ_NOT_FOUND,
                      cz_engine_errmsg(NULL));
        EXPECT_STATUS(cz_image_write_png(b, 0, "/proc/version"), CZ_INTERNAL, cz_engine_errmsg(NULL));
    }

    /* Cancel through the callback. */
    int calls = 0;
    cz_image_batch *b2 = NULL;
    p.progress = cancel_at_2;
    p.user_data = &calls;
    p.steps = 4;
    EXPECT_STATUS(cz_generate(eng, &p, &b2), CZ_CANCELLED, cz_engine_errmsg(eng));
    CHECK(b2 == NULL, "batch on cancel");
    CHECK(calls == 2, "progress called %d times, want 2", calls);

    /* Handles that are not live, or of the wrong kind, are refused, not dereferenced. */
    cz_image_batch *stale = NULL;
    p = params_defaults();
    p.model = "tp";
    CHECK(cz_generate(eng, &p, &stale) == CZ_OK && stale, "generate: %s", cz_engine_errmsg(eng));
    cz_image_batch_free(stale);
    cz_image_batch_free(stale); /* second free: no-op */
    CHECK(cz_image_batch_count(stale) == 0, "count of a freed batch");
    CHECK(cz_image_batch_pixels(stale, 0) == NULL, "pixels of a freed batch");
    EXPECT_STATUS(cz_image_write_png(stale, 0, "/tmp/x.png"), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    cz_image_batch *wrong = NULL;
    EXPECT_STATUS(cz_generate((cz_engine *)b, &p, &wrong), CZ_INVALID_ARGUMENT, cz_engine_errmsg((cz_engine *)b));
    EXPECT_STATUS(cz_model_load((cz_engine *)&p, "tp", g_model_dir), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(cz_image_batch_count((cz_image_batch *)eng) == 0, "engine used as a batch");
    cz_engine_free((cz_engine *)b);   /* not an engine: no-op, b stays valid */
    CHECK(cz_image_batch_count(b) == 2, "batch damaged by a wrong-kind free");

    /* The batch outlives the engine. */
    cz_engine_free(eng);
    cz_engine_free(eng); /* second free: no-op */
    if (b) {
        const uint8_t *px = cz_image_batch_pixels(b, 0);
        unsigned sum = 0;
        for (int i = 0; i < 28 * 28; i++) sum += px[i];
        CHECK(sum > 0, "pattern is all black");
        cz_image_batch_free(b);
    }
}

/* ---- Helpers for temporary files and model directories ----------------------------------- */

static char g_tmp[256]; /* a private temporary directory for this run */

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "fopen %s: %s", path, strerror(errno));
    if (!f) return;
    CHECK(fwrite(bytes, 1, n, f) == n, "fwrite %s", path);
    fclose(f);
}

/* Makes <g_tmp>/<name>/config.json holding `config`; returns the directory (static buffer). */
static const char *model_dir_with(const char *name, const char *config) {
    static char dir[512];
    char path[600];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, config, strlen(config));
    return dir;
}

static int is_png(const char *path) {
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static long file_size(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---- ABI-safe initialisers --------------------------------------------------------------- */

static void test_initialisers(void) {
    /* They write exactly `size` bytes: a canary after the struct survives. */
    struct { cz_engine_options o; unsigned char canary[16]; } e;
    memset(&e, 0xAB, sizeof e);
    CHECK(cz_engine_options_init(&e.o, sizeof e.o) == CZ_OK, "%s", cz_engine_errmsg(NULL));
    CHECK(e.o.struct_size == sizeof e.o, "struct_size %u", e.o.struct_size);
    CHECK(e.o.plugin_dir != NULL && e.o.models_dir != NULL && e.o.threads == 0 && e.o.preload == 0
          && e.o.log == NULL && e.o.log_user_data == NULL, "defaults");
    for (size_t i = 0; i < sizeof e.canary; i++) CHECK(e.canary[i] == 0xAB, "canary byte %zu overwritten", i);

    struct { cz_generate_params p; unsigned char canary[16]; } g;
    memset(&g, 0xAB, sizeof g);
    CHECK(cz_generate_params_init(&g.p, sizeof g.p) == CZ_OK, "%s", cz_engine_errmsg(NULL));
    CHECK(g.p.struct_size == sizeof g.p && g.p.count == 1 && g.p.model == NULL && g.p.progress == NULL
          && g.p.timeout_ms == 0, "generate defaults");
    for (size_t i = 0; i < sizeof g.canary; i++) CHECK(g.canary[i] == 0xAB, "canary byte %zu overwritten", i);

    /* Bad sizes: refused, nothing written. */
    memset(&e, 0xAB, sizeof e);
    EXPECT_STATUS(cz_engine_options_init(&e.o, 8), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(((unsigned char *)&e.o)[0] == 0xAB, "a refused init wrote");
    EXPECT_STATUS(cz_engine_options_init(NULL, sizeof e.o), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_engine_options_init(&e.o, (size_t)CZ_MAX_STRUCT_SIZE + 1), CZ_INVALID_ARGUMENT,
                  cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_engine_options_init(&e.o, sizeof e.o - 4), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_generate_params_init(&g.p, 16), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    EXPECT_STATUS(cz_generate_params_init(NULL, sizeof g.p), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));

    /* The deprecated by-value functions are inline wrappers over the initialisers. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    cz_engine_options legacy = cz_engine_default_options();
    cz_generate_params legacy_p = cz_generate_default_params();
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    CHECK(legacy.struct_size == sizeof legacy && legacy_p.struct_size == sizeof legacy_p && legacy_p.count == 1,
          "deprecated wrappers");
}

/* ---- The environment is the host's ------------------------------------------------------- */

static void test_environment_untouched_and_threads_reach_the_backend(void) {
    const char *before = getenv("COALESCE_THREADS");
    char saved[64] = "";
    if (before) snprintf(saved, sizeof saved, "%s", before);
    cz_engine_options o = opts_defaults();
    o.threads = 3;
    cz_engine *eng = NULL;
    CHECK(cz_engine_create(&o, &eng) == CZ_OK, "create: %s", cz_engine_errmsg(NULL));
    const char *after = getenv("COALESCE_THREADS");
    CHECK((before == NULL && after == NULL) || (before && after && strcmp(saved, after) == 0),
          "cz_engine_create changed COALESCE_THREADS: %s -> %s", before ? saved : "(unset)",
          after ? after : "(unset)");
    if (!eng) return;
    /* The value arrives with the request: this model refuses any other thread count. */
    const char *dir = model_dir_with("needs3", "{\"backend\": \"test-pattern\", \"require_threads\": 3}");
    CHECK(cz_model_load(eng, "needs3", dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    cz_generate_params p = params_defaults();
    p.model = "needs3";
    cz_image_batch *b = NULL;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK, "generate with threads 3: %s", cz_engine_errmsg(eng));
    cz_image_batch_free(b);
    cz_engine_free(eng);

    eng = make_engine(); /* threads 0 */
    if (!eng) return;
    CHECK(cz_model_load(eng, "needs3", dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    b = NULL;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    CHECK(strstr(cz_engine_errmsg(eng), "threads") != NULL, "message: %s", cz_engine_errmsg(eng));
    cz_engine_free(eng);

    /* Diagnostics: the kernels' instruction set; cz_blas_core (deprecated) says "none". */
    const char *isa = cz_kernel_isa();
    CHECK(isa && (!strcmp(isa, "avx512") || !strcmp(isa, "avx2") || !strcmp(isa, "scalar")), "cz_kernel_isa: %s", isa ? isa : "NULL");
    CHECK(cz_blas_core() && !strcmp(cz_blas_core(), "none"), "cz_blas_core: %s", cz_blas_core() ? cz_blas_core() : "NULL");
}

/* ---- Typed model info, model list, log callback ------------------------------------------ */

struct log_capture {
    int lines;
    int saw_loaded;
};

static void capture_log(int level, const char *message, void *user_data) {
    struct log_capture *c = user_data;
    c->lines++;
    if (level == CZ_LOG_INFO && strstr(message, "model loaded") && strstr(message, "model=test-pattern")) c->saw_loaded = 1;
}

static void test_model_info_list_and_log(void) {
    struct log_capture cap = {0, 0};
    cz_engine_options o = opts_defaults();
    o.log = capture_log;
    o.log_user_data = &cap;
    cz_engine *eng = NULL;
    CHECK(cz_engine_create(&o, &eng) == CZ_OK, "create: %s", cz_engine_errmsg(NULL));
    if (!eng) return;

    char **names = (char **)0x1;
    size_t n = 99;
    CHECK(cz_engine_list_models(eng, &names, &n) == CZ_OK, "list: %s", cz_engine_errmsg(eng));
    CHECK(names && names[0] == NULL && n == 0, "empty list");
    cz_string_list_free(names);

    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    CHECK(cz_model_load(eng, "a-second", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    CHECK(cap.saw_loaded, "log callback did not see the load (%d lines)", cap.lines);
    CHECK(cz_engine_list_models(eng, &names, NULL) == CZ_OK, "list: %s", cz_engine_errmsg(eng));
    CHECK(names && names[0] && names[1] && !names[2] && strcmp(names[0], "a-second") == 0
          && strcmp(names[1], "tp") == 0, "list of two, sorted");
    cz_string_list_free(names);
    cz_string_list_free(NULL);
    EXPECT_STATUS(cz_engine_list_models(eng, NULL, &n), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_engine_list_models(NULL, &names, &n), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(names == NULL, "names not cleared on failure");

    cz_model_info info;
    memset(&info, 0x55, sizeof info);
    info.struct_size = sizeof info;
    CHECK(cz_model_get_info(eng, "tp", &info) == CZ_OK, "info: %s", cz_engine_errmsg(eng));
    CHECK(info.height == 28 && info.width == 28 && info.channels == 1 && info.default_steps == 4
          && info.max_steps == 64 && info.max_batch == 256 && info.supports_guidance == 0 && info.generation >= 1,
          "info fields %d %d %d %d %d %d %d", info.height, info.width, info.channels, info.default_steps,
          info.max_steps, info.max_batch, info.supports_guidance);
    CHECK(strcmp(info.backend, "test-pattern") == 0 && strcmp(info.backend_version, "1.0.0") == 0
          && strcmp(info.revision, "1") == 0, "info strings %s %s %s", info.backend, info.backend_version,
          info.revision);
    uint64_t gen = info.generation;
    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "reload: %s", cz_engine_errmsg(eng));
    CHECK(cz_model_get_info(eng, "tp", &info) == CZ_OK && info.generation != gen, "generation after hot swap");
    EXPECT_STATUS(cz_model_get_info(eng, "nope", &info), CZ_NOT_FOUND, cz_engine_errmsg(eng));
    EXPECT_STATUS(cz_model_get_info(eng, "tp", NULL), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    info.struct_size = 12;
    EXPECT_STATUS(cz_model_get_info(eng, "tp", &info), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    cz_engine_free(eng);
}

/* ---- Model load validation ---------------------------------------------------------------- */

/* A one-tensor F32 safetensors file holding `a` and `b`. */
static void write_safetensors(const char *path, float a, float b) {
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(json);
    unsigned char buf[256];
    uint64_t n = hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, json, hl);
    memcpy(buf + 8 + hl, &a, 4);
    memcpy(buf + 12 + hl, &b, 4);
    write_file(path, buf, 16 + hl);
}

static void test_load_validation(void) {
    cz_engine *eng = make_engine();
    if (!eng) return;
    struct { const char *config; int status; const char *needle; } cases[] = {
        {"", CZ_INVALID_ARGUMENT, "empty"},
        {"not json", CZ_INVALID_ARGUMENT, "JSON"},
        {"[1, 2]", CZ_INVALID_ARGUMENT, "object"},
        {"{\"revision\": \"x\"}", CZ_INVALID_ARGUMENT, "backend"},
        {"{\"backend\": 7}", CZ_INVALID_ARGUMENT, "backend"},
        {"{\"backend\": \"test-pattern\", \"default_steps\": -5}", CZ_INVALID_ARGUMENT, "default_steps"},
        {"{\"backend\": \"test-pattern\", \"default_steps\": \"two\"}", CZ_INVALID_ARGUMENT, "default_steps"},
        {"{\"backend\": \"test-pattern\", \"default_steps\": 2e9}", CZ_INVALID_ARGUMENT, "default_steps"},
        {"{\"backend\": \"test-pattern\", \"default_steps\": 2.5}", CZ_INVALID_ARGUMENT, "default_steps"},
        {"{\"backend\": \"test-pattern\", \"default_steps\": 100}", CZ_INVALID_ARGUMENT, "must be in 1...64"},
        {"{\"backend\": \"test-pattern\", \"revision\": 3}", CZ_INVALID_ARGUMENT, "revision"},
        {"{\"backend\": \"test-pattern\", \"weights\": \"../x\"}", CZ_INVALID_ARGUMENT, "weights"},
        {"{\"backend\": \"test-pattern\", \"weights\": \"missing.safetensors\"}", CZ_NOT_FOUND, "weights"},
        {"{\"backend\": \"test-pattern\", \"step_delay_ms\": \"slow\"}", CZ_INTERNAL, "step_delay_ms"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        const char *dir = model_dir_with(name, cases[i].config);
        int rc = cz_model_load(eng, name, dir);
        CHECK(rc == cases[i].status, "config %s: got %s, want %s (%s)", cases[i].config, cz_status_string(rc),
              cz_status_string(cases[i].status), cz_engine_errmsg(eng));
        CHECK(strstr(cz_engine_errmsg(eng), cases[i].needle) != NULL, "config %s: message does not say %s: %s",
              cases[i].config, cases[i].needle, cz_engine_errmsg(eng));
    }
    /* Weights: finite loads, NaN and infinity are refused, naming the file and tensor. */
    const char *dir = model_dir_with("weights", "{\"backend\": \"test-pattern\"}");
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, 1.0f, -2.5f);
    CHECK(cz_model_load(eng, "weights", dir) == CZ_OK, "finite weights: %s", cz_engine_errmsg(eng));
    float inf = 1e30f;
    inf *= 1e30f;
    float nan = inf - inf;
    float bad[2] = {nan, inf};
    for (int k = 0; k < 2; k++) {
        write_safetensors(path, 0.5f, bad[k]);
        EXPECT_STATUS(cz_model_load(eng, "weights", dir), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
        CHECK(strstr(cz_engine_errmsg(eng), "non-finite") && strstr(cz_engine_errmsg(eng), "\"w\""),
              "message: %s", cz_engine_errmsg(eng));
    }
    write_file(path, "\x05\x00\x00", 3);
    EXPECT_STATUS(cz_model_load(eng, "weights", dir), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    /* The first, good load keeps serving after the failed reloads. */
    cz_model_info info;
    info.struct_size = sizeof info;
    CHECK(cz_model_get_info(eng, "weights", &info) == CZ_OK, "old instance gone: %s", cz_engine_errmsg(eng));
    cz_engine_free(eng);
}

/* ---- cz_image_write_png and what is at the path ------------------------------------------- */

static void test_png_targets(void) {
    cz_engine *eng = make_engine();
    if (!eng) return;
    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    cz_generate_params p = params_defaults();
    p.model = "tp";
    cz_image_batch *b = NULL;
    CHECK(cz_generate(eng, &p, &b) == CZ_OK && b, "generate: %s", cz_engine_errmsg(eng));
    cz_engine_free(eng);
    if (!b) return;
    char path[600], target[600], link2[600];
    struct stat st;

    /* A new file. */
    snprintf(path, sizeof path, "%s/new.png", g_tmp);
    CHECK(cz_image_write_png(b, 0, path) == CZ_OK && is_png(path), "new file: %s", cz_engine_errmsg(NULL));

    /* Our own 0600 file with one link: replaced atomically (a new inode), mode kept. */
    snprintf(path, sizeof path, "%s/own.png", g_tmp);
    write_file(path, "old", 3);
    chmod(path, 0600);
    struct stat before;
    stat(path, &before);
    CHECK(cz_image_write_png(b, 0, path) == CZ_OK && is_png(path), "own file: %s", cz_engine_errmsg(NULL));
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600 && st.st_ino != before.st_ino && st.st_nlink == 1,
          "own file: mode %o, inode %s", (unsigned)(st.st_mode & 07777), st.st_ino != before.st_ino ? "new" : "same");

    /* A 0600 file with two hard links: written through, both names see the PNG, mode and links kept. */
    snprintf(path, sizeof path, "%s/linked.png", g_tmp);
    snprintf(link2, sizeof link2, "%s/linked-too.png", g_tmp);
    write_file(path, "old", 3);
    chmod(path, 0600);
    CHECK(link(path, link2) == 0, "link: %s", strerror(errno));
    stat(path, &before);
    CHECK(cz_image_write_png(b, 0, path) == CZ_OK, "hard link: %s", cz_engine_errmsg(NULL));
    CHECK(stat(path, &st) == 0 && st.st_nlink == 2 && (st.st_mode & 07777) == 0600 && st.st_ino == before.st_ino,
          "hard link: %d links, mode %o", (int)st.st_nlink, (unsigned)(st.st_mode & 07777));
    CHECK(is_png(path) && is_png(link2), "both names hold the PNG");

    /* A symbolic link: refused; the link stays a link and its target is untouched. */
    snprintf(target, sizeof target, "%s/target.txt", g_tmp);
    snprintf(path, sizeof path, "%s/symlink.png", g_tmp);
    write_file(target, "keep", 4);
    CHECK(symlink(target, path) == 0, "symlink: %s", strerror(errno));
    EXPECT_STATUS(cz_image_write_png(b, 0, path), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(strstr(cz_engine_errmsg(NULL), "symbolic link") != NULL, "message: %s", cz_engine_errmsg(NULL));
    CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && file_size(target) == 4, "symlink or target changed");

    /* A FIFO: refused without opening it (opening would block). */
    snprintf(path, sizeof path, "%s/fifo.png", g_tmp);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
    EXPECT_STATUS(cz_image_write_png(b, 0, path), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(strstr(cz_engine_errmsg(NULL), "FIFO") != NULL, "message: %s", cz_engine_errmsg(NULL));
    CHECK(lstat(path, &st) == 0 && S_ISFIFO(st.st_mode), "FIFO replaced");

    /* Devices: refused, the node stays (run as root this used to replace /dev/full). */
    EXPECT_STATUS(cz_image_write_png(b, 0, "/dev/null"), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(strstr(cz_engine_errmsg(NULL), "device") != NULL, "message: %s", cz_engine_errmsg(NULL));
    CHECK(lstat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "/dev/null is no longer a device");
    /* A directory. */
    EXPECT_STATUS(cz_image_write_png(b, 0, g_tmp), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    cz_image_batch_free(b);
}

/* ---- Loads of an empty config must not leak (RSS over many loads) ------------------------- */

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_empty_config_loads(int loads) {
    cz_engine *eng = make_engine();
    if (!eng) return;
    const char *dir = model_dir_with("empty", "");
    int warmup = loads / 10;
    for (int i = 0; i < warmup; i++) cz_model_load(eng, "empty", dir);
    long before = rss_kib();
    int wrong = 0;
    for (int i = 0; i < loads; i++) {
        if (cz_model_load(eng, "empty", dir) != CZ_INVALID_ARGUMENT) wrong++;
    }
    long after = rss_kib();
    cz_engine_free(eng);
    CHECK(wrong == 0, "%d of %d loads of an empty config did not fail with CZ_INVALID_ARGUMENT", wrong, loads);
    CHECK(before > 0 && after - before < 2048, "RSS grew by %ld KiB over %d loads of an empty config",
          after - before, loads);
    printf("empty config: %d loads, RSS %ld -> %ld KiB\n", loads, before, after);
}

/* The same request twice, and from two threads at once, gives the same pixels. */
struct thread_arg {
    cz_engine *eng;
    uint8_t pixels[4 * 28 * 28];
    int rc;
};

static void *gen_thread(void *arg) {
    struct thread_arg *t = arg;
    for (int k = 0; k < 20; k++) {
        cz_generate_params p = params_defaults();
        p.model = "tp";
        p.prompt = "a bag";
        p.seed = 7;
        p.count = 4;
        cz_image_batch *b = NULL;
        t->rc = cz_generate(t->eng, &p, &b);
        if (t->rc != CZ_OK) {
            fprintf(stderr, "thread: %s\n", cz_engine_errmsg(t->eng));
            return NULL;
        }
        memcpy(t->pixels, cz_image_batch_pixels(b, 0), sizeof t->pixels);
        cz_image_batch_free(b);
        /* A failing call on this thread must not disturb the other thread's message. */
        p.count = -1;
        b = NULL;
        if (cz_generate(t->eng, &p, &b) != CZ_INVALID_ARGUMENT || !strstr(cz_engine_errmsg(t->eng), "count")) {
            t->rc = -1;
            fprintf(stderr, "thread: unexpected message %s\n", cz_engine_errmsg(t->eng));
            return NULL;
        }
    }
    return NULL;
}

static void test_concurrent(void) {
    cz_engine *eng = make_engine();
    if (!eng) return;
    CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    struct thread_arg a = {eng, {0}, -1}, b = {eng, {0}, -1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, gen_thread, &a);
    pthread_create(&tb, NULL, gen_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.rc == CZ_OK && b.rc == CZ_OK, "thread status %d %d", a.rc, b.rc);
    CHECK(memcmp(a.pixels, b.pixels, sizeof a.pixels) == 0, "threads got different pixels");
    cz_engine_free(eng);
}

/* Many full cycles: the leak test runs this under valgrind. */
static void test_cycles(int cycles) {
    uint8_t first[2 * 28 * 28];
    for (int i = 0; i < cycles; i++) {
        cz_engine *eng = make_engine();
        if (!eng) return;
        CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
        /* Hot swap once per cycle, and a failing load. */
        CHECK(cz_model_load(eng, "tp", g_model_dir) == CZ_OK, "reload: %s", cz_engine_errmsg(eng));
        CHECK(cz_model_load(eng, "tp2", "/nonexistent") == CZ_NOT_FOUND, "bad load");
        char *json = NULL;
        CHECK(cz_model_describe(eng, "tp", &json) == CZ_OK && json && strstr(json, "\"height\""),
              "describe: %s", json ? json : cz_engine_errmsg(eng));
        cz_string_free(json);
        cz_generate_params p = params_defaults();
        p.model = "tp";
        p.prompt = "a shirt";
        p.seed = 1234;
        p.count = 2;
        cz_image_batch *b = NULL;
        int rc = cz_generate(eng, &p, &b);
        CHECK(rc == CZ_OK, "generate: %s", cz_engine_errmsg(eng));
        if (rc == CZ_OK) {
            if (i == 0) memcpy(first, cz_image_batch_pixels(b, 0), sizeof first);
            else CHECK(memcmp(first, cz_image_batch_pixels(b, 0), sizeof first) == 0, "cycle %d differs", i);
            if (i % 8 == 0) {
                char path[64];
                snprintf(path, sizeof path, "/tmp/cz_test_api_%d.png", (int)getpid());
                CHECK(cz_image_write_png(b, 1, path) == CZ_OK, "png: %s", cz_engine_errmsg(NULL));
                unlink(path);
            }
        }
        cz_image_batch_free(b);
        if (i % 2 == 0) CHECK(cz_model_unload(eng, "tp") == CZ_OK, "unload: %s", cz_engine_errmsg(eng));
        cz_engine_free(eng);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [CYCLES]\n", argv[0]);
        return 2;
    }
    g_model_dir = argv[1];
    int cycles = argc > 2 ? atoi(argv[2]) : 20;
    int empty_loads = argc > 3 ? atoi(argv[3]) : 0;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/cz_test_api_XXXXXX");
    if (mkdtemp(g_tmp) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    if (empty_loads > 0) {
        test_empty_config_loads(empty_loads);
    } else {
        test_version_and_strings();
        test_initialisers();
        test_null_and_bad_input();
        test_limits_at_their_bounds();
        test_environment_untouched_and_threads_reach_the_backend();
        test_model_info_list_and_log();
        test_load_validation();
        test_png_targets();
        test_concurrent();
        test_cycles(cycles);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    if (failures) {
        fprintf(stderr, "test_api: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_api: all checks passed (%d cycles)\n", cycles);
    return 0;
}

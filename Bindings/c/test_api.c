/*
 * test_api.c — checks libcoalesce's C contract from plain C: bad input returns a status and a
 * message (never a crash), ownership rules hold, and many create/load/generate/free cycles
 * leave nothing behind (run it under valgrind: `make test-leaks`).
 *
 *     gcc -std=c99 -Wall -o test_api test_api.c $(pkg-config --cflags --libs coalesce) -lpthread
 *     ./test_api MODEL_DIR [CYCLES]
 *
 * MODEL_DIR is a test-pattern model directory (models/test-pattern). Exit status 0 = all passed.
 */
#define _POSIX_C_SOURCE 200809L
#include <coalesce.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static cz_engine *make_engine(void) {
    cz_engine *eng = NULL;
    cz_engine_options o = cz_engine_default_options();
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
    cz_engine_options bad = cz_engine_default_options();
    bad.struct_size = 3;
    cz_engine *e = (cz_engine *)0x1;
    EXPECT_STATUS(cz_engine_create(&bad, &e), CZ_INVALID_ARGUMENT, cz_engine_errmsg(NULL));
    CHECK(e == NULL, "out not cleared on failure");
    bad = cz_engine_default_options();
    bad.plugin_dir = "/nonexistent/plugins";
    EXPECT_STATUS(cz_engine_create(&bad, &e), CZ_NOT_FOUND, cz_engine_errmsg(NULL));
    bad = cz_engine_default_options();
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
    cz_generate_params p = cz_generate_default_params();
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
    p = cz_generate_default_params();
    p.model = "tp";
    int counts[] = {0, -1, -2147483647 - 1, CZ_MAX_COUNT + 1, 2147483647};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        p.count = counts[i];
        EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    }
    p.count = 1;
    int steps[] = {-2, CZ_MAX_STEPS + 1, 2147483647};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        p.steps = steps[i];
        EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    }
    p = cz_generate_default_params();
    p.model = "tp";
    p.struct_size = 8;
    EXPECT_STATUS(cz_generate(eng, &p, &b), CZ_INVALID_ARGUMENT, cz_engine_errmsg(eng));
    /* Strings must be valid UTF-8: never repaired, never looked up. */
    p = cz_generate_default_params();
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
    p = cz_generate_default_params();
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
    p = cz_generate_default_params();
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

/* The same request twice, and from two threads at once, gives the same pixels. */
struct thread_arg {
    cz_engine *eng;
    uint8_t pixels[4 * 28 * 28];
    int rc;
};

static void *gen_thread(void *arg) {
    struct thread_arg *t = arg;
    for (int k = 0; k < 20; k++) {
        cz_generate_params p = cz_generate_default_params();
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
        p.count = 0;
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
        cz_generate_params p = cz_generate_default_params();
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
    test_version_and_strings();
    test_null_and_bad_input();
    test_concurrent();
    test_cycles(cycles);
    if (failures) {
        fprintf(stderr, "test_api: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_api: all checks passed (%d cycles)\n", cycles);
    return 0;
}

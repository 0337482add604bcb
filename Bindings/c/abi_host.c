/*
 * abi_host.c — a host built against ANOTHER version of coalesce.h, run against the current
 * library (used by test_c.sh):
 *
 *   -DOLD_HOST  with Bindings/c/abi/coalesce-0.1.h, the header of libcoalesce 0.1 (smaller
 *               cz_engine_options, by-value cz_*_default_* functions, no initialisers);
 *   -DNEW_HOST  with a copy of the current header whose structs each have one more trailing field
 *               (`future_field`), as a program built against a newer library would have.
 *
 *     ./abi_host MODEL_DIR      exit status 0 = every check passed
 */
#define _POSIX_C_SOURCE 200809L
#include <coalesce.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define CANARY 0xC3

static int canary_intact(const unsigned char *c, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (c[i] != CANARY) return 0;
    return 1;
}

/* Generates 2 images from `model` with `p` and checks them. */
static void generate_two(cz_engine *eng, cz_generate_params *p) {
    cz_image_batch *b = NULL;
    int rc = cz_generate(eng, p, &b);
    CHECK(rc == CZ_OK && b, "generate: %s: %s", cz_status_string(rc), cz_engine_errmsg(eng));
    CHECK(cz_image_batch_count(b) == 2 && cz_image_batch_width(b) == 28, "batch %d x %d",
          cz_image_batch_count(b), cz_image_batch_width(b));
    cz_image_batch_free(b);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    const char *model_dir = argv[1];
    printf("host built with coalesce.h %s (sizeof options %zu, params %zu), library %s\n", CZ_VERSION_STRING,
           sizeof(cz_engine_options), sizeof(cz_generate_params), cz_version());
    CHECK(cz_version_number() / 10000 == CZ_VERSION_MAJOR, "major version differs");
    cz_engine *eng = NULL;

#ifdef OLD_HOST
    /* 0.1's by-value functions: the library must write no more than the 0.1 struct. The return
     * slot is the first member, followed by a canary the callee must not touch. */
    struct { cz_engine_options o; unsigned char canary[32]; } e;
    struct { cz_generate_params p; unsigned char canary[32]; } g;
    memset(&e, CANARY, sizeof e);
    memset(&g, CANARY, sizeof g);
    e.o = cz_engine_default_options();
    g.p = cz_generate_default_params();
    CHECK(canary_intact(e.canary, sizeof e.canary), "cz_engine_default_options wrote past the 0.1 struct");
    CHECK(canary_intact(g.canary, sizeof g.canary), "cz_generate_default_params wrote past the 0.1 struct");
    CHECK(e.o.struct_size == sizeof e.o, "options struct_size %u, host's sizeof %zu", e.o.struct_size, sizeof e.o);
    CHECK(g.p.struct_size == sizeof g.p, "params struct_size %u, host's sizeof %zu", g.p.struct_size, sizeof g.p);
    CHECK(e.o.plugin_dir != NULL && e.o.threads == 0 && g.p.count == 1, "0.1 defaults");
    /* The smaller struct is accepted: the fields it lacks take their defaults. */
    e.o.threads = 1;
    int rc = cz_engine_create(&e.o, &eng);
    CHECK(rc == CZ_OK && eng, "create with the 0.1 struct: %s", cz_engine_errmsg(NULL));
    if (!eng) return 1;
    CHECK(cz_model_load(eng, "tp", model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    g.p.model = "tp";
    g.p.count = 2;
    generate_two(eng, &g.p);
    cz_engine_free(eng);
#endif

#ifdef NEW_HOST
    /* The initialisers fill the whole (larger) struct: zero for the field this library does
     * not know, nothing past it. */
    struct { cz_engine_options o; unsigned char canary[32]; } e;
    struct { cz_generate_params p; unsigned char canary[32]; } g;
    memset(&e, CANARY, sizeof e);
    memset(&g, CANARY, sizeof g);
    CHECK(cz_engine_options_init(&e.o, sizeof e.o) == CZ_OK, "options_init: %s", cz_engine_errmsg(NULL));
    CHECK(cz_generate_params_init(&g.p, sizeof g.p) == CZ_OK, "params_init: %s", cz_engine_errmsg(NULL));
    CHECK(canary_intact(e.canary, sizeof e.canary) && canary_intact(g.canary, sizeof g.canary),
          "an initialiser wrote past the caller's struct");
    CHECK(e.o.struct_size == sizeof e.o && e.o.future_field == 0, "options: size %u, future %lld",
          e.o.struct_size, (long long)e.o.future_field);
    CHECK(g.p.struct_size == sizeof g.p && g.p.future_field == 0 && g.p.count == 1, "params: size %u",
          g.p.struct_size);
    /* A newer field left at 0 is fine; set, it asks for something this library cannot do. */
    e.o.future_field = 7;
    int rc = cz_engine_create(&e.o, &eng);
    CHECK(rc == CZ_INVALID_ARGUMENT && eng == NULL && strstr(cz_engine_errmsg(NULL), "offset"),
          "create with an unknown field set: %s: %s", cz_status_string(rc), cz_engine_errmsg(NULL));
    e.o.future_field = 0;
    rc = cz_engine_create(&e.o, &eng);
    CHECK(rc == CZ_OK && eng, "create with the larger struct: %s", cz_engine_errmsg(NULL));
    if (!eng) return 1;
    CHECK(cz_model_load(eng, "tp", model_dir) == CZ_OK, "load: %s", cz_engine_errmsg(eng));
    g.p.model = "tp";
    g.p.count = 2;
    generate_two(eng, &g.p);
    g.p.future_field = 1;
    cz_image_batch *b = NULL;
    rc = cz_generate(eng, &g.p, &b);
    CHECK(rc == CZ_INVALID_ARGUMENT && b == NULL, "generate with an unknown field set: %s", cz_status_string(rc));
    /* An output struct larger than the library's: its fields are written, the unknown one is
     * zeroed, nothing past the struct is touched. */
    struct { cz_model_info i; unsigned char canary[32]; } m;
    memset(&m, CANARY, sizeof m);
    m.i.struct_size = sizeof m.i;
    CHECK(cz_model_get_info(eng, "tp", &m.i) == CZ_OK, "info: %s", cz_engine_errmsg(eng));
    CHECK(m.i.height == 28 && strcmp(m.i.backend, "test-pattern") == 0 && m.i.future_field == 0
          && m.i.struct_size == sizeof m.i, "info from a newer host: %d %s", m.i.height, m.i.backend);
    CHECK(canary_intact(m.canary, sizeof m.canary), "cz_model_get_info wrote past the caller's struct");
    cz_engine_free(eng);
#endif

    if (failures) {
        fprintf(stderr, "abi_host: %d failure(s)\n", failures);
        return 1;
    }
    printf("abi_host: all checks passed\n");
    return 0;
}

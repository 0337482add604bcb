/*
 * example.c — generate images with libcoalesce from plain C.
 *
 * Build against an installed Coalesce (make install PREFIX=...):
 *     export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
 *     gcc -std=c99 -Wall -o example example.c $(pkg-config --cflags --libs coalesce)
 * Run:
 *     ./example [-m MODEL] [-d MODEL_DIR] [-p PROMPT] [-s SEED] [-n STEPS] [-c COUNT]
 *               [-o OUT.png] [-r RAW_OUT] [--cancel-at STEP]
 * Defaults: model "test-pattern" from the installed model repository, seed 42, 4 images,
 * image 0 written to example.png. -r writes the raw pixels of the whole batch (count*h*w*c
 * bytes) so other faces can compare them byte for byte; --cancel-at shows the progress
 * callback cancelling a call.
 */
#include <coalesce.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct progress_state {
    int cancel_at; /* 0 = never */
    int calls;
};

/* Called once per network evaluation; returning 0 cancels cz_generate. */
static int on_progress(int step, int total, void *user_data) {
    struct progress_state *st = user_data;
    st->calls++;
    fprintf(stderr, "  step %d/%d\n", step, total);
    return !(st->cancel_at > 0 && step >= st->cancel_at);
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-m MODEL] [-d MODEL_DIR] [-p PROMPT] [-s SEED] [-n STEPS] "
                    "[-c COUNT] [-o OUT.png] [-r RAW_OUT] [--cancel-at STEP]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    const char *model = "test-pattern", *model_dir = NULL, *prompt = "a sneaker";
    const char *out_png = "example.png", *out_raw = NULL;
    uint64_t seed = 42;
    int steps = 0, count = 4;
    struct progress_state st = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "-d")) model_dir = v;
        else if (!strcmp(a, "-p")) prompt = v;
        else if (!strcmp(a, "-s")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "-n")) steps = atoi(v);
        else if (!strcmp(a, "-c")) count = atoi(v);
        else if (!strcmp(a, "-o")) out_png = v;
        else if (!strcmp(a, "-r")) out_raw = v;
        else if (!strcmp(a, "--cancel-at")) st.cancel_at = atoi(v);
        else return usage(argv[0]);
    }

    printf("libcoalesce %s (header %s)\n", cz_version(), CZ_VERSION_STRING);
    if (cz_version_number() / 10000 != CZ_VERSION_MAJOR) {
        fprintf(stderr, "library major version differs from the header\n");
        return 1;
    }

    /* Structs are filled by the library for the size this program was compiled with, so the
     * program keeps working with newer libraries whose structs have grown. */
    cz_engine_options opt;
    cz_status rc = cz_engine_options_init(&opt, sizeof opt);
    if (rc != CZ_OK) {
        fprintf(stderr, "cz_engine_options_init: %s\n", cz_engine_errmsg(NULL));
        return 1;
    }
    printf("plugin dir: %s\nmodels dir: %s\n", opt.plugin_dir, opt.models_dir);
    cz_engine *eng = NULL;
    rc = cz_engine_create(&opt, &eng);
    if (rc != CZ_OK) {
        fprintf(stderr, "cz_engine_create: %s: %s\n", cz_status_string(rc), cz_engine_errmsg(NULL));
        return 1;
    }

    rc = cz_model_load(eng, model, model_dir);
    if (rc != CZ_OK) {
        fprintf(stderr, "cz_model_load: %s: %s\n", cz_status_string(rc), cz_engine_errmsg(eng));
        cz_engine_free(eng);
        return 1;
    }
    cz_model_info info;
    info.struct_size = sizeof info;
    if (cz_model_get_info(eng, model, &info) == CZ_OK) {
        printf("model: %s %dx%dx%d, backend %s %s, revision \"%s\", steps %d (max %d), guidance %s\n",
               model, info.height, info.width, info.channels, info.backend, info.backend_version,
               info.revision, info.default_steps, info.max_steps, info.supports_guidance ? "yes" : "no");
    }
    char **names = NULL;
    size_t n_models = 0;
    if (cz_engine_list_models(eng, &names, &n_models) == CZ_OK) {
        printf("loaded models (%zu):", n_models);
        for (size_t i = 0; names[i] != NULL; i++) printf(" %s", names[i]);
        printf("\n");
    }
    cz_string_list_free(names);

    cz_generate_params p;
    cz_generate_params_init(&p, sizeof p);
    p.model = model;
    p.prompt = prompt;
    p.seed = seed;
    p.steps = steps;
    p.count = count;
    p.progress = on_progress;
    p.user_data = &st;
    cz_image_batch *batch = NULL;
    rc = cz_generate(eng, &p, &batch);
    if (rc != CZ_OK) {
        fprintf(stderr, "cz_generate: %s: %s (progress called %d times)\n", cz_status_string(rc),
                cz_engine_errmsg(eng), st.calls);
        cz_engine_free(eng);
        return rc == CZ_CANCELLED ? 3 : 1;
    }

    int n = cz_image_batch_count(batch), h = cz_image_batch_height(batch);
    int w = cz_image_batch_width(batch), c = cz_image_batch_channels(batch);
    const uint8_t *px = cz_image_batch_pixels(batch, 0);
    uint64_t sum = 0;
    for (size_t i = 0; i < (size_t)n * h * w * c; i++) sum += px[i];
    printf("generated %d images of %dx%dx%d (seed of image 0: %" PRIu64 ", pixel sum %" PRIu64 ")\n",
           n, h, w, c, cz_image_batch_seed(batch, 0), sum);

    rc = cz_image_write_png(batch, 0, out_png);
    if (rc != CZ_OK) {
        fprintf(stderr, "cz_image_write_png: %s: %s\n", cz_status_string(rc), cz_engine_errmsg(NULL));
    } else {
        printf("wrote %s\n", out_png);
    }
    if (rc == CZ_OK && out_raw) {
        FILE *f = fopen(out_raw, "wb");
        size_t bytes = (size_t)n * h * w * c;
        if (!f || fwrite(px, 1, bytes, f) != bytes) {
            perror(out_raw);
            rc = CZ_INTERNAL;
        }
        if (f) fclose(f);
        if (rc == CZ_OK) printf("wrote %zu raw bytes to %s\n", bytes, out_raw);
    }

    cz_image_batch_free(batch);
    cz_engine_free(eng);
    return rc == CZ_OK ? 0 : 1;
}

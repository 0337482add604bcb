/* spy_host.c MODEL_DIR... — loads each model directory into one engine, generates one image of
 * each at 2 steps, frees everything. Run under env_spy.so by test_c.sh: the only environment edit
 * it may show is this program's own marker below (which proves the spy is listening). */
#define _POSIX_C_SOURCE 200809L
#include <coalesce.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    cz_engine *eng = NULL;
    cz_engine_options o;
    int i;
    setenv("CZ_SPY_MARKER", "1", 1);
    if (cz_engine_options_init(&o, sizeof o) != CZ_OK || cz_engine_create(&o, &eng) != CZ_OK) {
        fprintf(stderr, "create: %s\n", cz_engine_errmsg(NULL));
        return 1;
    }
    for (i = 1; i < argc; i++) {
        const char *dir = argv[i], *slash = strrchr(dir, '/');
        const char *name = slash ? slash + 1 : dir;
        cz_generate_params p;
        cz_image_batch *b = NULL;
        if (cz_model_load(eng, name, dir) != CZ_OK) {
            fprintf(stderr, "load %s: %s\n", dir, cz_engine_errmsg(eng));
            return 1;
        }
        cz_generate_params_init(&p, sizeof p);
        p.model = name;
        p.prompt = "a sneaker";
        p.seed = 1;
        p.count = 1;
        p.steps = 2;
        if (cz_generate(eng, &p, &b) != CZ_OK) {
            fprintf(stderr, "generate %s: %s\n", name, cz_engine_errmsg(eng));
            return 1;
        }
        cz_image_batch_free(b);
        printf("%s: loaded, generated, freed\n", name);
    }
    cz_engine_free(eng);
    return 0;
}

/* old_host.c — a program written for libcoalesce 0.1: the by-value defaults (deprecated in 0.2)
 * and cz_blas_core (deprecated in 0.3). test_c.sh compiles it with -Werror: it must fail without
 * CZ_VERSION_MIN_REQUIRED (the deprecations warn) and build once it says CZ_VERSION_0_1. */
#include <coalesce.h>

int main(void) {
    cz_engine_options o = cz_engine_default_options();
    cz_generate_params p = cz_generate_default_params();
    const char *core = cz_blas_core();
    return (o.struct_size != 0 && p.struct_size != 0 && core != 0) ? 0 : 1;
}

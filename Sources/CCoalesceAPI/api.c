// See include/CCoalesceAPI.h. dladdr lives here because Swift's Glibc module does not import it
// (it needs _GNU_SOURCE).
#define _GNU_SOURCE
#include "CCoalesceAPI.h"

#include <dlfcn.h>
#include <stdio.h>

size_t ccapi_sizeof_engine_options_v0_1(void) { return sizeof(ccapi_engine_options_v0_1); }
size_t ccapi_sizeof_engine_options(void) { return sizeof(cz_engine_options); }
size_t ccapi_sizeof_generate_params_v0_1(void) { return sizeof(ccapi_generate_params_v0_1); }
size_t ccapi_sizeof_generate_params(void) { return sizeof(cz_generate_params); }
size_t ccapi_sizeof_model_info(void) { return sizeof(cz_model_info); }

int ccapi_library_path(char *buf, unsigned long cap) {
    Dl_info info;
    if (buf == NULL || cap == 0) return -1;
    if (dladdr((void *)&ccapi_library_path, &info) == 0 || info.dli_fname == NULL) return -1;
    snprintf(buf, cap, "%s", info.dli_fname);
    return 0;
}

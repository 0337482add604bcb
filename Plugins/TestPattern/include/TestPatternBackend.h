/* TestPatternBackend: the one symbol this plugin exports (see Include/coalesce_backend.h). */
#ifndef TEST_PATTERN_BACKEND_H
#define TEST_PATTERN_BACKEND_H
#include "../../../Include/coalesce_backend.h"

const cz_backend_vtable *cz_backend_entry(void);

#endif

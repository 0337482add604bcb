// Exposes Include/coalesce.h (the public C API of libcoalesce) to the Swift module that
// implements it (Sources/CoalesceC), plus one private helper. Private symbols here are prefixed
// ccapi_ and are not exported from libcoalesce.so (Sources/CoalesceC/exports.map).
#ifndef CCOALESCE_API_H
#define CCOALESCE_API_H
#include "../../../Include/coalesce.h"

/// Path of the shared object that contains this function (libcoalesce.so), written into buf
/// (NUL-terminated). Returns 0 on success, -1 if dladdr cannot tell.
int ccapi_library_path(char *buf, unsigned long cap);
#endif

#include "../../../Include/coalesce_backend.h"

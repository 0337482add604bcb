#include "coalesce.pb-c.h"
#include "worker.pb-c.h"

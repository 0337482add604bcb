#include "coalesce.pb-c.h"

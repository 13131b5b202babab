/*
** The memory store: sessions kept in this process only (the seed's
** InMemorySessionManager).
*/
#ifndef AS_STORE_MEMORY_H
#define AS_STORE_MEMORY_H

#include "as_error.h"
#include "as_store.h"

as_status as_store_memory_new(as_store **out, as_error *err);

#endif

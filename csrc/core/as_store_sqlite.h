/*
** The SQLite store: sessions in one file, durable and shared by processes.
*/
#ifndef AS_STORE_SQLITE_H
#define AS_STORE_SQLITE_H

#include "as_error.h"
#include "as_store.h"

#define AS_SQLITE_DEFAULT_BUSY_TIMEOUT_MS 5000

typedef enum as_durability {
    AS_DURABILITY_NORMAL, /* WAL, synchronous=NORMAL: survives a crash of the process */
    AS_DURABILITY_FULL    /* WAL, synchronous=FULL: also survives a power cut */
} as_durability;

typedef struct as_sqlite_opts {
    int busy_timeout_ms; /* how long to wait for another process's lock */
    as_durability durability;
    int run_triggers;    /* run the triggers the file holds (off: a file is data, never code) */
} as_sqlite_opts;

/* Opens (creating it with mode 0600 when absent) the store file at path. */
as_status as_store_sqlite_open(const char *path, const as_sqlite_opts *opts, as_store **out,
                               as_error *err);

#endif

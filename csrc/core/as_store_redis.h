/*
** The Redis store: sessions on a Redis server, shared by processes on many
** machines. See as_store_redis.c for the key layout.
*/
#ifndef AS_STORE_REDIS_H
#define AS_STORE_REDIS_H

#include "as_store.h"

#define AS_REDIS_DEFAULT_HOST "127.0.0.1"
#define AS_REDIS_DEFAULT_PORT 6379
#define AS_REDIS_DEFAULT_PREFIX "agentsession:"
#define AS_REDIS_DEFAULT_TIMEOUT_MS 2000
#define AS_REDIS_PREFIX_MAX 255

typedef struct as_redis_opts {
    const char *host;     /* NULL: AS_REDIS_DEFAULT_HOST */
    int port;             /* 0: AS_REDIS_DEFAULT_PORT */
    int db;
    const char *username; /* NULL: the default user */
    const char *password; /* NULL: no AUTH */
    const char *prefix;   /* NULL: AS_REDIS_DEFAULT_PREFIX */
    int timeout_ms;       /* 0: AS_REDIS_DEFAULT_TIMEOUT_MS; bounds each call */
    /* Non-NULL: a Redis Cluster, learnt from these nodes ("host:port", an
    ** IPv6 address in brackets); host, port and db are then unused. */
    const char *const *cluster;
    size_t ncluster;
} as_redis_opts;

/* On a cluster, sessions are spread over this many index shards, each with
** its own hash tag (see as_store_redis.c). Part of the key layout. */
#define AS_REDIS_SHARDS 16

/* The hash slot of a key, as Redis Cluster computes it: CRC16 of the key, or
** of the text between its first "{" and the next "}" when that is not empty,
** modulo 16384. */
unsigned as_redis_key_slot(const char *key, size_t len);

/* Connects (AS_EUNAVAILABLE naming host and port when it cannot; AS_EINVALID
** when the server refuses the password or the db, or, for a cluster, a node
** is not a cluster node or an address is not "host:port"). Later calls
** reconnect by themselves after a failure; on a cluster they follow the slot
** map as it changes. */
as_status as_store_redis_open(const as_redis_opts *opts, as_store **out, as_error *err);

#endif

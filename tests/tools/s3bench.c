/*
 * s3bench — time pgark's S3 driver moving many objects, for tests/bench/s3.sh.
 *
 *   s3bench put ENDPOINT BUCKET PREFIX COUNT SIZE CONCURRENCY
 *   s3bench get ENDPOINT BUCKET PREFIX COUNT SIZE CONCURRENCY
 *
 * put stores COUNT objects of SIZE bytes named PREFIX/000000.. with
 * storage_s3_put_many (CONCURRENCY requests in flight, one single PUT each, MD5 and
 * SHA-256 of every body); the bodies cycle through 16 different pseudo-random buffers. get reads
 * them back with CONCURRENCY threads sharing one storage handle (the driver is
 * thread-safe and pools its connections), each taking the next object, and checks the
 * byte count and the first bytes. Credentials are s3rver's (S3RVER/S3RVER); the bucket
 * must exist. Prints one JSON object: op, objects, bytes, wall_s, cpu_user_s,
 * cpu_sys_s, rss_kib (this process's peak). Exit 0 on success, 1 with the error on
 * stderr.
 */
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/storage.h"
#include "pgark/storage_s3.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define NBUF 16

struct get_job {
    struct storage *s;
    char **paths;
    size_t n, size;
    uint8_t **bufs;
    atomic_size_t next;
    atomic_int failed;
    atomic_uint_least64_t bytes;
};

struct get_one {
    const uint8_t *expect;
    size_t got;
    int mismatch;
};

static int sink(void *ctx, const uint8_t *data, size_t len)
{
    struct get_one *g = ctx;
    if (g->got < 64) {
        size_t k = len < 64 - g->got ? len : 64 - g->got;
        if (memcmp(data, g->expect + g->got, k) != 0)
            g->mismatch = 1;
    }
    g->got += len;
    return 0;
}

static void *get_thread(void *arg)
{
    struct get_job *j = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n || atomic_load(&j->failed))
            break;
        struct get_one g = {.expect = j->bufs[i % NBUF]};
        if (storage_read(j->s, j->paths[i], 0, STORAGE_TO_END, sink, &g) < 0) {
            if (!atomic_exchange(&j->failed, 1))
                err_print();
            break;
        }
        if (g.got != j->size || g.mismatch) {
            if (!atomic_exchange(&j->failed, 1))
                fprintf(stderr, "s3bench: object \"%s\" came back as %zu bytes%s\n", j->paths[i],
                        g.got, g.mismatch ? " with other content" : "");
            break;
        }
        atomic_fetch_add(&j->bytes, g.got);
    }
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 8 || (strcmp(argv[1], "put") != 0 && strcmp(argv[1], "get") != 0)) {
        fprintf(stderr, "usage: s3bench put|get ENDPOINT BUCKET PREFIX COUNT SIZE CONCURRENCY\n");
        return 2;
    }
    bool put = strcmp(argv[1], "put") == 0;
    size_t n = strtoull(argv[5], NULL, 10), size = strtoull(argv[6], NULL, 10);
    int conc = atoi(argv[7]);
    if (n == 0 || size == 0 || conc < 1 || conc > 64) {
        fprintf(stderr, "s3bench: COUNT and SIZE must be positive, CONCURRENCY 1 to 64\n");
        return 2;
    }
    struct storage_s3_options o = {
        .name = "bench",
        .endpoint = argv[2],
        .bucket = argv[3],
        .access_key_id = "S3RVER",
        .secret_access_key = "S3RVER",
        .concurrency = conc,
        .part_size = size > STORAGE_S3_MIN_PART_SIZE ? size : 0,
    };
    struct storage *s = storage_s3_new(&o);
    if (!s) {
        err_print();
        return 1;
    }

    uint8_t *bufs[NBUF];
    for (int b = 0; b < NBUF; b++) {
        /* the same bytes in every run (get checks what put stored); incompressible */
        bufs[b] = xmalloc(size);
        uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(b + 1);
        for (size_t k = 0; k < size; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            bufs[b][k] = (uint8_t)(x >> 32);
        }
    }
    char **paths = xcalloc(n, sizeof(*paths));
    for (size_t i = 0; i < n; i++)
        paths[i] = xasprintf("%s/%06zu", argv[4], i);

    int rc = 0;
    uint64_t bytes = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    if (put) {
        struct storage_s3_object *objs = xcalloc(n, sizeof(*objs));
        for (size_t i = 0; i < n; i++)
            objs[i] =
                (struct storage_s3_object){.path = paths[i], .data = bufs[i % NBUF], .len = size};
        rc = storage_s3_put_many(s, objs, n);
        if (rc < 0)
            err_print();
        bytes = (uint64_t)n * size;
        free(objs);
    } else {
        struct get_job j = {.s = s, .paths = paths, .n = n, .size = size, .bufs = bufs};
        pthread_t *th = xcalloc((size_t)conc, sizeof(*th));
        int started = 0;
        for (; started < conc; started++)
            if (pthread_create(&th[started], NULL, get_thread, &j) != 0)
                break;
        for (int t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        free(th);
        if (started == 0 || atomic_load(&j.failed))
            rc = -1;
        bytes = atomic_load(&j.bytes);
    }
    double wall = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);

    if (rc == 0)
        printf("{\"op\": \"%s\", \"objects\": %zu, \"bytes\": %" PRIu64 ", \"concurrency\": %d, "
               "\"wall_s\": %.3f, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, \"rss_kib\": %ld}\n",
               argv[1], n, bytes, conc, wall, tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime),
               tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime), ru1.ru_maxrss);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    for (int b = 0; b < NBUF; b++)
        free(bufs[b]);
    storage_free(s);
    return rc == 0 ? 0 : 1;
}

/*
 * fuzz.h — what the libFuzzer harnesses of tests/fuzz share.
 *
 * Each fuzz_<name>.c feeds one parser of untrusted input (what a repository, a server
 * or a configuration file can hold) with libFuzzer's inputs, built with AddressSanitizer
 * and UBSan (make fuzz; make check runs each for a few seconds). A harness asserts what
 * the parser promises beyond "does not crash" with FUZZ_CHECK, which aborts: libFuzzer
 * then keeps the input. Its seeds are in tests/fuzz/corpus/<name>/, and every input that
 * once crashed stays there as a regression input.
 */
#ifndef PGARK_FUZZ_H
#define PGARK_FUZZ_H

#include "pgark/error.h"
#include "pgark/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input, taken from the front: fixed-size values first, then the rest as bytes.
 * Past the end every value reads as zero, so any input is usable. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

static inline uint64_t fuzz_take(struct fuzz_in *in, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++) {
        v = v << 8 | (in->n ? *in->p : 0);
        if (in->n) {
            in->p++;
            in->n--;
        }
    }
    return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
    return (uint8_t)fuzz_take(in, 1);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
    return (uint32_t)fuzz_take(in, 4);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
    return fuzz_take(in, 8);
}

/* A copy of data with a NUL after it (malloc'd): for parsers of C strings. The copy is
 * exactly size + 1 bytes, so that reading past the end is caught. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Logging off (errors are expected by the thousand), stdin from /dev/null (a config
 * may name "/dev/stdin" as a secret file). */
static inline void fuzz_quiet(void)
{
    static FILE *devnull;
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    log_set_stream(devnull);
    log_set_level(LOG_ERROR);
    if (!freopen("/dev/null", "r", stdin))
        abort();
}

/* A scratch directory for harnesses that need a repository, on tmpfs when there is
 * one; removed when the process exits. Returns a static path. */
const char *fuzz_scratch(void);

#ifdef FUZZ_SCRATCH_IMPL
static char scratch_dir[128];

static void scratch_remove(void)
{
    char cmd[200];
    if (!scratch_dir[0])
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", scratch_dir);
}

const char *fuzz_scratch(void)
{
    if (scratch_dir[0])
        return scratch_dir;
    snprintf(scratch_dir, sizeof(scratch_dir), "/dev/shm/pgark-fuzz-XXXXXX");
    if (!mkdtemp(scratch_dir)) {
        snprintf(scratch_dir, sizeof(scratch_dir), "/tmp/pgark-fuzz-XXXXXX");
        if (!mkdtemp(scratch_dir))
            abort();
    }
    atexit(scratch_remove);
    return scratch_dir;
}
#endif

#endif

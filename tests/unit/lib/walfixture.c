/* walfixture.c — loading the WAL fixtures of tests/unit/data (see walfixture.h). */
#include "walfixture.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

static FILE *open_fixture(const char *name)
{
    char path[PATH_MAX + 64];
    const char *env = getenv("PGARK_UNIT_DATA");
    if (env) {
        snprintf(path, sizeof(path), "%s/%s", env, name);
        return fopen(path, "rb");
    }
    FILE *f;
    snprintf(path, sizeof(path), "tests/unit/data/%s", name);
    if ((f = fopen(path, "rb")))
        return f;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(exe, '/');
        if (!slash)
            break;
        *slash = '\0';
        snprintf(path, sizeof(path), "%s/tests/unit/data/%s", exe, name);
        if ((f = fopen(path, "rb")))
            return f;
    }
    return NULL;
}

static void load_segment(const char *name, uint8_t *dst)
{
    FILE *f = open_fixture(name);
    if (!f) {
        fprintf(stderr, "cannot find fixture \"%s\" (set PGARK_UNIT_DATA)\n", name);
        exit(1);
    }
    uint8_t *comp = malloc(1 << 20);
    size_t n = fread(comp, 1, 1 << 20, f);
    fclose(f);
    ZSTD_DCtx *dctx = ZSTD_createDCtx(); /* pgark's libzstd shim has no ZSTD_decompress */
    size_t got = ZSTD_decompressDCtx(dctx, dst, WALFIXTURE_SEG, comp, n);
    ZSTD_freeDCtx(dctx);
    free(comp);
    if (ZSTD_isError(got) || got != WALFIXTURE_SEG) {
        fprintf(stderr, "fixture \"%s\" does not decompress to one segment\n", name);
        exit(1);
    }
}

uint8_t *walfixture_load(void)
{
    uint8_t *wal = malloc(2 * WALFIXTURE_SEG);
    load_segment("waldecode-000000010000000000000009.zst", wal);
    load_segment("waldecode-00000001000000000000000A.zst", wal + WALFIXTURE_SEG);
    return wal;
}

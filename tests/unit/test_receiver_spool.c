/*
 * test_receiver_spool.c — walreceiver/spool.c: a new segment is padded with zeros to
 * its full size before any WAL byte of it is acknowledged, in writes of at most 64 kB,
 * each ending on a multiple of 64 kB (the page cache keeps folios as large as the
 * writes that made them, and every WAL write into a large one costs more), and holds
 * the WAL written into it, byte for byte, with zeros after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../walreceiver/spool_int.h"
#include "pgark/error.h"
#include "pgark/mem.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SEG (16 * 1024 * 1024)
#define PAD_MAX (64 * 1024)

/* Every pwrite of the process comes here (this program's definition wins over libc's
 * for the spool code linked into it): the zero-filled ones are the padding. */
static struct {
    bool on;
    int pads;
    uint64_t padded; /* bytes */
    size_t largest;
    int unaligned; /* padding writes that end off a 64 kB multiple, short of the end */
} seen;

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (seen.on && n > 0) {
        const uint8_t *b = buf;
        bool zero = b[0] == 0 && memcmp(b, b + 1, n - 1) == 0;
        if (zero) {
            seen.pads++;
            seen.padded += n;
            if (n > seen.largest)
                seen.largest = n;
            uint64_t end = (uint64_t)off + n;
            if (end % PAD_MAX != 0 && end != SEG)
                seen.unaligned++;
        }
    }
    return syscall(SYS_pwrite64, fd, buf, n, off);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *data = xmalloc(SEG + 1);
    *len = fread(data, 1, SEG + 1, f);
    fclose(f);
    return data;
}

/* Write the first WAL bytes of segment segno, whose file holds `from` bytes of padding
 * already. */
static void pads_in_small_aligned_writes(const char *dir, uint64_t segno, uint64_t from)
{
    struct spool *s = spool_open(dir, SEG, 0);
    if (!s)
        fail_msg("%s", err_message());
    uint8_t wal[3000];
    for (size_t i = 0; i < sizeof(wal); i++)
        wal[i] = (uint8_t)(i * 7 + 1); /* never zero: not taken for padding */
    memset(&seen, 0, sizeof(seen));
    seen.on = true;
    assert_int_equal(spool_write(s, 1, segno * SEG, wal, sizeof(wal)), 0);
    seen.on = false;
    lsn_t flushed = 0;
    assert_int_equal(spool_flush(s, &flushed), 0);
    assert_int_equal(flushed, segno * SEG + sizeof(wal));

    assert_int_equal(seen.padded, SEG - from);
    assert_true(seen.pads >= (int)((SEG - from) / PAD_MAX));
    assert_true(seen.largest <= PAD_MAX);
    assert_int_equal(seen.unaligned, 0);

    timeline_t tli;
    char name[WAL_NAME_BUFLEN];
    uint64_t synced;
    assert_true(spool_current(s, &tli, name, &synced));
    assert_int_equal(synced, sizeof(wal));
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.partial", dir, name);
    size_t len;
    uint8_t *data = read_all(path, &len);
    assert_int_equal(len, SEG);
    assert_memory_equal(data, wal, sizeof(wal));
    uint8_t *zeros = xcalloc(1, SEG);
    assert_memory_equal(data + sizeof(wal), zeros, SEG - sizeof(wal));
    free(zeros);
    free(data);
    spool_close(s);
}

/* A new segment; then one whose padding was cut short by a crash (an all-zero file
 * of an odd length), which is padded on from where it stopped. */
static void test_padding(void **state)
{
    (void)state;
    /* The spool's parent must be the user's own (spool_check_owner): not /tmp. */
    char base[] = "/tmp/pgark-spool-XXXXXX", dir[64];
    assert_non_null(mkdtemp(base));
    snprintf(dir, sizeof(dir), "%s/spool", base);

    pads_in_small_aligned_writes(dir, 3, 0);

    char name[WAL_NAME_BUFLEN], path[256];
    wal_segment_name(1, 4, SEG, name);
    snprintf(path, sizeof(path), "%s/%s.partial", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 100000), 0);
    close(fd);
    pads_in_small_aligned_writes(dir, 4, 100000);

    remove_dir(dir);
    rmdir(base);
    err_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

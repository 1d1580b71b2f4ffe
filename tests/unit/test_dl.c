/* test_dl.c — libraries loaded on first use: a library and its functions are found; a
 * library or a function that is not there ends the process with a message naming it
 * and the package to install, and with the status the command chose. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgark/dl.h"
#include "pgark/mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const libm_names[] = {"cos", "sqrt"};

static void test_loads_once(void **state)
{
    (void)state;
    void *syms[2] = {NULL, NULL};
    struct dl_library lib = {
        .soname = "libm.so.6", .package = "libc6", .names = libm_names, .syms = syms, .n = 2};
    double (*sqrt_fn)(double) = (double (*)(double))dl_sym(&lib, 1);
    assert_true(atomic_load(&lib.loaded));
    assert_non_null(syms[0]);
    assert_true(sqrt_fn(9.0) == 3.0);
    /* Loaded: the table is read as it is. */
    syms[1] = &syms;
    assert_ptr_equal(dl_sym(&lib, 1), &syms);
}

/* Run dl_sym(lib, 0) in a child with `status` as the failure status; returns the
 * child's exit status and what it wrote to stderr (caller frees). */
static int run_failing(struct dl_library *lib, int status, char **err)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        if (status)
            dl_set_failure_status(status);
        dl_sym(lib, 0);
        _exit(0); /* not reached when the loading fails */
    }
    close(fds[1]);
    struct buf b = BUF_INIT;
    char chunk[512];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof(chunk))) > 0)
        buf_append(&b, chunk, (size_t)n);
    close(fds[0]);
    *err = buf_steal(&b);
    int wstatus;
    assert_int_equal(waitpid(pid, &wstatus, 0), pid);
    assert_true(WIFEXITED(wstatus));
    return WEXITSTATUS(wstatus);
}

static void test_missing_library(void **state)
{
    (void)state;
    static const char *const names[] = {"f"};
    void *syms[1];
    struct dl_library lib = {.soname = "libpgark-no-such.so.9",
                             .package = "pgark-no-such9",
                             .names = names,
                             .syms = syms,
                             .n = 1};
    char *err;
    assert_int_equal(run_failing(&lib, 0, &err), 1);
    assert_non_null(strstr(err, "error  could not load \"libpgark-no-such.so.9\": "
                                "libpgark-no-such.so.9: cannot open shared object file"));
    assert_non_null(strstr(err, "hint: install the package pgark-no-such9 "
                                "(apt-get install pgark-no-such9)"));
    free(err);
    /* wal-fetch's status: PostgreSQL must not take it for "no such segment". */
    assert_int_equal(run_failing(&lib, 255, &err), 255);
    assert_non_null(strstr(err, "could not load \"libpgark-no-such.so.9\""));
    free(err);
}

static void test_missing_function(void **state)
{
    (void)state;
    static const char *const names[] = {"cos", "pgark_no_such_function"};
    void *syms[2];
    struct dl_library lib = {
        .soname = "libm.so.6", .package = "libc6", .names = names, .syms = syms, .n = 2};
    char *err;
    assert_int_equal(run_failing(&lib, 0, &err), 1);
    assert_non_null(strstr(err, "could not load \"libm.so.6\": "));
    assert_non_null(strstr(err, "undefined symbol: pgark_no_such_function"));
    assert_non_null(strstr(err, "hint: install the package libc6"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_once),
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_missing_function),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

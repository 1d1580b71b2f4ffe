/* test_confsnap.c — configuration backups without a server: pgark's configuration
 * redacted (block and flow mappings, quoted values, a conninfo's password, keys that
 * only look like secrets left alone), and a record written out under a directory:
 * every file at its original path, a path that would leave the directory or content
 * that does not match its digest refused before anything is written. */
#include "pgark/confsnap.h"
#include "pgark/error.h"
#include "pgark/hash.h"
#include "pgark/mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static void redacts(const char *in, const char *want)
{
    char *got = confsnap_redact(in);
    assert_string_equal(got, want);
    free(got);
}

static void test_redact(void **state)
{
    (void)state;
    redacts("encryption:\n  passphrase: \"very secret\"\n",
            "encryption:\n  passphrase: <redacted>\n");
    redacts("encryption: { passphrase: abc, other: 1 }\n",
            "encryption: { passphrase: <redacted>, other: 1 }\n");
    redacts("  secret_access_key: 'a,b}c'\n  session_token: tok\n",
            "  secret_access_key: <redacted>\n  session_token: <redacted>\n");
    redacts("    access_key_id: AKIA\n", "    access_key_id: <redacted>\n");
    redacts("notify:\n  - url: https://hooks.example/abc\n", "notify:\n  - url: <redacted>\n");
    redacts("conninfo: \"host=db password=hunter2 user=x\"\n",
            "conninfo: \"host=db password=<redacted> user=x\"\n");
    redacts("conninfo: host=db password='p w' user=x\n",
            "conninfo: host=db password=<redacted> user=x\n");
    /* files holding secrets are paths; other keys with the words stay */
    redacts("  passphrase_file: /etc/pgark/pass\n  secret_access_key_file: k\n",
            "  passphrase_file: /etc/pgark/pass\n  secret_access_key_file: k\n");
    redacts("my_passphrase: keep\nurl_base: keep\n", "my_passphrase: keep\nurl_base: keep\n");
    redacts("", "");
}

static char *record(const char *path, const char *content, const char *sha_override)
{
    uint8_t sha[SHA256_LEN];
    char sha_hex[2 * SHA256_LEN + 1];
    char *hex = xmalloc(2 * strlen(content) + 1);
    sha256(content, strlen(content), sha);
    hex_encode((const uint8_t *)content, strlen(content), hex);
    char *r =
        xasprintf("{\"format\":1,\"time\":\"t\",\"files\":[{\"path\":\"%s\",\"source\":"
                  "\"include\",\"sha256\":\"%s\",\"data_hex\":\"%s\"}],\"warnings\":[]}",
                  path, sha_override ? sha_override : hex_encode(sha, SHA256_LEN, sha_hex), hex);
    free(hex);
    return r;
}

static void test_write_tree(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_confsnap.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *out = xasprintf("%s/out", dir);
    size_t n = 0;

    char *rec = record("/etc/postgresql/15/main/pg_hba.conf", "local all all trust\n", NULL);
    assert_int_equal(confsnap_write_tree(rec, out, "backup \"L\"", false, &n), 0);
    assert_int_equal(n, 1);
    char *f = xasprintf("%s/etc/postgresql/15/main/pg_hba.conf", out);
    FILE *fp = fopen(f, "r");
    assert_non_null(fp);
    char buf[64] = {0};
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, fp), strlen("local all all trust\n"));
    fclose(fp);
    assert_string_equal(buf, "local all all trust\n");
    char *readme = xasprintf("%s/README", out);
    assert_int_equal(access(readme, F_OK), -1); /* only beside the data */
    /* flat, beside the data: short names, the paths they had in the README */
    char *flat = xasprintf("%s/flat", dir);
    assert_int_equal(confsnap_write_tree(rec, flat, "backup \"L\"", true, &n), 0);
    char *ff = xasprintf("%s/01-pg_hba.conf", flat), *fr = xasprintf("%s/README", flat);
    assert_int_equal(access(ff, F_OK), 0);
    fp = fopen(fr, "r");
    assert_non_null(fp);
    char text[2048] = {0};
    assert_true(fread(text, 1, sizeof(text) - 1, fp) > 0);
    fclose(fp);
    assert_non_null(
        strstr(text, "01-pg_hba.conf\t/etc/postgresql/15/main/pg_hba.conf\t(include)\n"));
    assert_non_null(strstr(text, "from backup \"L\""));
    free(ff);
    free(fr);
    free(flat);
    free(rec);

    /* a path leaving the directory, a relative one, content not matching its digest */
    const char *bad[] = {"/etc/../../escape", "relative/path", "/ok/but/digest"};
    for (int i = 0; i < 3; i++) {
        char *out2 = xasprintf("%s/bad%d", dir, i);
        rec = record(bad[i], "x\n",
                     i == 2 ? "00000000000000000000000000000000000000000000000000000"
                              "00000000000"
                            : NULL);
        assert_int_equal(confsnap_write_tree(rec, out2, "o", false, &n), -ERR_INTEGRITY);
        err_clear();
        assert_int_equal(access(out2, F_OK), -1); /* nothing written, not even the dir */
        free(rec);
        free(out2);
    }
    char *cmd = xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(readme);
    free(f);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_write_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

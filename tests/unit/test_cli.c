/* test_cli.c — how the commands open a cluster's repositories (src/cli/repos.c): the
 * compression and encryption choice of the configuration is one value, the same for
 * every repository and every command that archives, and none for a command that only
 * reads; the configuration's compression names are the codec table's; the set restore
 * and wal-fetch read is ordered posix first and opened only when asked; a repository
 * is created only by a command that archives with an identity to expect. */
#include "pgark/cli.h"
#include "pgark/codec.h"
#include "pgark/config.h"
#include "pgark/error.h"
#include "pgark/mem.h"
#include "pgark/repo.h"

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

static char tmpdir[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pgark-test-cli-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    setenv("PGARK_TEST_KDF_N", "1024", 1); /* a cheap scrypt for the encrypted one */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    int rc = system(cmd);
    free(cmd);
    return rc == 0 ? 0 : -1;
}

/* Repositories: "far" (s3, never contacted here), "a" and "b" (posix, under tmpdir), in
 * that order in the cluster's list; compression and encryption as given. */
static struct config *load(const char *compression, const char *encryption)
{
    struct config *cfg = NULL;
    char *yaml =
        xasprintf("spool: %s/spool\n"
                  "repos:\n"
                  "  far: {type: s3, endpoint: \"https://s3.example.com\", bucket: bkt,\n"
                  "        region: r, access_key_id: key-id, secret_access_key: secret-key}\n"
                  "  a: {type: posix, path: %s/a}\n"
                  "  b: {type: posix, path: %s/b}\n"
                  "%s%s"
                  "clusters: {main: {conninfo: \"host=/tmp\", repos: [far, a, b]}}\n",
                  tmpdir, tmpdir, tmpdir, compression, encryption);
    err_clear();
    if (config_load_string("t.yaml", yaml, &cfg) != 0)
        fail_msg("config did not load: %s", err_message());
    free(yaml);
    return cfg;
}

/* Every compression the configuration accepts is a codec of the same name. */
static void test_config_names_are_codecs(void **state)
{
    (void)state;
    const enum config_compression all[] = {CONFIG_COMPRESSION_NONE, CONFIG_COMPRESSION_ZSTD};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *name = config_compression_name(all[i]);
        const struct codec *c = codec_by_name(CODEC_COMPRESSION, name);
        assert_non_null(c);
        assert_string_equal(c->name, name);
    }
}

/* The configured codec and level when archiving; none when only reading; the
 * passphrase either way. */
static void test_options(void **state)
{
    (void)state;
    struct config *cfg =
        load("compression: {algorithm: zstd, level: 7}\n", "encryption: {passphrase: secret}\n");
    const struct config_cluster *cl = config_cluster_find(cfg, "main");
    assert_non_null(cl);
    struct repo_options ro;

    assert_int_equal(cli_repo_options(cfg, cl, CLI_REPO_ARCHIVE, &ro), 0);
    assert_string_equal(ro.cluster, "main");
    assert_string_equal(ro.codecs.compression->name, "zstd");
    assert_int_equal(ro.codecs.level, 7);
    assert_string_equal(ro.codecs.passphrase, "secret");
    assert_int_equal(ro.kdf_n, 1024);

    assert_int_equal(cli_repo_options(cfg, cl, CLI_REPO_READ, &ro), 0);
    assert_string_equal(ro.cluster, "main");
    assert_true(codec_is_none(ro.codecs.compression));
    assert_int_equal(ro.codecs.level, 0);
    assert_string_equal(ro.codecs.passphrase, "secret");
    assert_string_equal(ro.key_cache_spool, cfg->spool); /* the key cache: on by default */
    config_free(cfg);

    cfg = load("", "encryption: {passphrase: secret, key_cache: false}\n");
    cl = config_cluster_find(cfg, "main");
    assert_int_equal(cli_repo_options(cfg, cl, CLI_REPO_ARCHIVE, &ro), 0);
    assert_string_equal(ro.codecs.passphrase, "secret");
    assert_null(ro.key_cache_spool);
    config_free(cfg);

    /* "none" carries no level, whatever the level key says; no passphrase, none */
    cfg = load("compression: {algorithm: none, level: 19}\n", "");
    cl = config_cluster_find(cfg, "main");
    assert_int_equal(cli_repo_options(cfg, cl, CLI_REPO_ARCHIVE, &ro), 0);
    assert_string_equal(ro.codecs.compression->name, "none");
    assert_int_equal(ro.codecs.level, 0);
    assert_null(ro.codecs.passphrase);
    assert_null(ro.key_cache_spool); /* nothing to keep */
    config_free(cfg);
}

/* Archiving with an identity creates a missing repository; reading never does, and
 * says which cluster the repository does not hold. */
static void test_open_creates_only_to_archive(void **state)
{
    (void)state;
    struct config *cfg = load("", "encryption: {passphrase: secret}\n");
    const struct config_cluster *cl = config_cluster_find(cfg, "main");
    const struct config_repo *a = config_cluster_repo(cfg, cl, 1);
    assert_string_equal(a->name, "a");
    const struct repo_identity id = {.system_identifier = 42, .pg_major = 15, .seg_size = 1 << 24};
    struct cli_repo r;

    err_clear();
    assert_true(cli_repo_open(cfg, cl, a, CLI_REPO_READ, NULL, &r) < 0);
    assert_int_equal(err_kind(), ERR_NOT_FOUND);
    assert_non_null(r.storage); /* the storage was set up, the repository was not there */
    assert_null(r.repo);
    cli_repo_close(&r);
    char *json = xasprintf("%s/a/main/repo.json", tmpdir);
    struct stat st;
    assert_int_equal(stat(json, &st), -1);

    err_clear();
    assert_int_equal(cli_repo_open(cfg, cl, a, CLI_REPO_ARCHIVE, &id, &r), 0);
    assert_true(repo_encrypted(r.repo));
    cli_repo_close(&r);
    assert_null(r.repo);
    assert_null(r.storage);
    assert_int_equal(stat(json, &st), 0);

    assert_int_equal(cli_repo_open(cfg, cl, a, CLI_REPO_READ, NULL, &r), 0);
    assert_int_equal(repo_identity(r.repo)->system_identifier, 42);
    cli_repo_close(&r);
    cli_repo_close(NULL);
    free(json);
    config_free(cfg);
}

/* The set reads posix repositories first, in the configuration's order, then the
 * others; only one when asked, and a name the cluster does not list is refused. */
static void test_set_order(void **state)
{
    (void)state;
    struct config *cfg = load("", "");
    const struct config_cluster *cl = config_cluster_find(cfg, "main");
    struct cli_repos set;

    assert_int_equal(cli_repos_init(&set, cfg, cl, NULL), 0);
    assert_int_equal(set.n, 3);
    assert_string_equal(set.r[0].conf->name, "a");
    assert_string_equal(set.r[1].conf->name, "b");
    assert_string_equal(set.r[2].conf->name, "far");
    for (size_t i = 0; i < set.n; i++) /* nothing opened yet */
        assert_null(set.r[i].storage);
    cli_repos_free(&set);

    assert_int_equal(cli_repos_init(&set, cfg, cl, "b"), 0);
    assert_int_equal(set.n, 1);
    assert_string_equal(set.r[0].conf->name, "b");
    cli_repos_free(&set);

    err_clear();
    assert_int_equal(cli_repos_init(&set, cfg, cl, "elsewhere"), -ERR_CONFIG);
    assert_string_equal(err_message(),
                        "repository \"elsewhere\" is not a repository of cluster \"main\"");
    cli_repos_free(&set);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_names_are_codecs),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_open_creates_only_to_archive),
        cmocka_unit_test(test_set_order),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

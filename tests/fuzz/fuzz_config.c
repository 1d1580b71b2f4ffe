/* fuzz_config.c — the YAML configuration (config_load_string): libyaml, the typed
 * getters, ${VAR} expansion and every cross reference. */
#include "fuzz.h"

#include "pgark/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    setenv("PGARK_FUZZ", "value", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_string(data, size);
    struct config *c = NULL;
    if (config_load_string("fuzz.yaml", text, &c) == 0) {
        FUZZ_CHECK(c->nclusters >= 1 && c->nrepos >= 1);
        for (size_t i = 0; i < c->nclusters; i++) {
            const struct config_cluster *cl = &c->clusters[i];
            FUZZ_CHECK(config_cluster_find(c, cl->name) == cl);
            for (size_t k = 0; k < cl->nrepos; k++)
                FUZZ_CHECK(config_cluster_repo(c, cl, k) != NULL);
        }
        config_free(c);
    } else {
        FUZZ_CHECK(c == NULL);
        /* every problem has the one shape: FILE:LINE:COLUMN: MESSAGE */
        FUZZ_CHECK(err_kind() == ERR_CONFIG);
        FUZZ_CHECK(strncmp(err_message(), "fuzz.yaml:", 10) == 0);
    }
    err_clear();
    free(text);
    return 0;
}

/* values.c — value checks shared by the sections of the configuration (config_int.h). */
#include "config_int.h"

#include <ctype.h>
#include <string.h>

#define NAME_MAX_LEN 48

static bool valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NAME_MAX_LEN)
        return false;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    }
    return true;
}

int cfg_check_name(struct cfg_reader *r, yaml_node_t *key_node, const char *what, const char *name)
{
    if (valid_name(name))
        return 0;
    return cfg_error(r, key_node,
                     "invalid %s name \"%s\" (use 1 to %d letters, digits, \"_\" or \"-\")", what,
                     name, NAME_MAX_LEN);
}

bool cfg_is_http_url(const char *s)
{
    const char *rest = NULL;
    if (strncmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        rest = s + 7;
    if (rest == NULL || *rest == '\0' || *rest == '/')
        return false;
    for (const char *p = s; *p; p++) {
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return false;
    }
    return true;
}

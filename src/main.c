/* main.c — command dispatch (placeholder until the CLI lands). */
#include "pgark/error.h"
#include "pgark/log.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "version") == 0) {
        printf("pgark 0.1.0\n");
        return 0;
    }
    err_set(ERR_USAGE, "no command given");
    err_print();
    return 2;
}

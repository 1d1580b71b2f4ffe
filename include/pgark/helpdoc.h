/*
 * helpdoc.h — the help text of `pgark help`, turned into the other forms users read it
 * in: the pgark.1 man page and the bash and zsh completion scripts.
 *
 * Promise: one source. The caller (src/main.c) hands its command table and global
 * options; the man page shows the same usage, summary and help text, and the completion
 * scripts offer exactly the options each command's usage line names. Cluster names are
 * completed at completion time, by asking `pgark completion --clusters` (which reads the
 * configuration the command line being completed names with --config).
 */
#ifndef PGARK_HELPDOC_H
#define PGARK_HELPDOC_H

#include <stddef.h>
#include <stdio.h>

struct helpdoc_command {
    const char *name;
    const char *usage;   /* "backup [--label L] ..." (lines after the first indented) */
    const char *summary; /* one line */
    const char *help;    /* paragraphs, "\n"-separated lines, or "" */
};

struct helpdoc_option {
    const char *option; /* "--config FILE" */
    const char *help;   /* may hold "\n" */
    const char *values; /* the words its value may be, blank-separated, for completion */
};

struct helpdoc {
    const char *version;
    const char *synopsis; /* the usage line of pgark itself, after "pgark " */
    const struct helpdoc_command *commands;
    size_t ncommands;
    const struct helpdoc_option *globals;
    size_t nglobals;
};

/* Print the global options as `pgark help` shows them ("  --config FILE      ..."). */
void helpdoc_print_globals(const struct helpdoc *d, FILE *out);
/* Write the man page (roff, man macros) to out. */
void helpdoc_man(const struct helpdoc *d, FILE *out);
/* Write the completion script for shell ("bash" or "zsh") to out. 0, or -ERR_USAGE
 * (with the error set) for another shell. */
int helpdoc_completion(const struct helpdoc *d, const char *shell, FILE *out);

#endif

/* helpdoc.c — the man page and the completion scripts from the help text (see
 * include/pgark/helpdoc.h). */
#include "pgark/helpdoc.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void helpdoc_print_globals(const struct helpdoc *d, FILE *out)
{
    for (size_t i = 0; i < d->nglobals; i++) {
        fprintf(out, "  %-18s ", d->globals[i].option);
        for (const char *p = d->globals[i].help; *p; p++) {
            fputc(*p, out);
            if (*p == '\n')
                fprintf(out, "%21s", "");
        }
        fputc('\n', out);
    }
}

/* ---- man page -------------------------------------------------------------------- */

/* Text for roff: backslashes and hyphens escaped, no line opening with a control
 * character. */
static void roff_text(FILE *out, const char *text)
{
    bool line_start = true;
    for (const char *p = text; *p; p++) {
        if (line_start && (*p == '.' || *p == '\''))
            fputs("\\&", out);
        if (*p == '\\')
            fputs("\\e", out);
        else if (*p == '-')
            fputs("\\-", out);
        else
            fputc(*p, out);
        line_start = *p == '\n';
    }
}

static void roff_line(FILE *out, const char *text)
{
    roff_text(out, text);
    if (!*text || text[strlen(text) - 1] != '\n')
        fputc('\n', out);
}

void helpdoc_man(const struct helpdoc *d, FILE *out)
{
    fprintf(out, ".TH PGARK 1 \"\" \"pgark %s\" \"User Commands\"\n", d->version);
    fputs(".SH NAME\npgark \\- continuous archiving and point\\-in\\-time recovery for "
          "PostgreSQL\n",
          out);
    fputs(".SH SYNOPSIS\n.nf\n", out);
    fputs("\\fBpgark\\fR ", out);
    roff_line(out, d->synopsis);
    fputs(".fi\n", out);
    fputs(".SH DESCRIPTION\n"
          "pgark streams a PostgreSQL cluster's WAL into a durable local spool and ships it to\n"
          "every repository (a directory, an S3\\-compatible bucket), takes deduplicated,\n"
          "compressed and encrypted base backups, and restores them to any point in time.\n"
          "Each command below is also described by \\fBpgark help\\fR \\fICOMMAND\\fR.\n",
          out);
    fputs(".SH GLOBAL OPTIONS\nThey come before the command.\n", out);
    for (size_t i = 0; i < d->nglobals; i++) {
        fputs(".TP\n\\fB", out);
        roff_text(out, d->globals[i].option);
        fputs("\\fR\n", out);
        roff_line(out, d->globals[i].help);
    }
    fputs(".SH COMMANDS\n", out);
    for (size_t i = 0; i < d->ncommands; i++) {
        const struct helpdoc_command *c = &d->commands[i];
        fprintf(out, ".SS %s\n.nf\n\\fBpgark\\fR ", c->name);
        roff_line(out, c->usage);
        fputs(".fi\n", out);
        roff_line(out, c->summary);
        if (*c->help) {
            fputs(".PP\n", out);
            roff_line(out, c->help);
        }
    }
    fputs(".SH EXIT STATUS\n"
          "0 success; 1 failure; 2 a usage or configuration error; 3 a problem found in the\n"
          "data (\\fBverify\\fR, \\fBcheck\\fR, \\fBdrill\\fR, \\fBreport\\fR, a refused "
          "restore).\n"
          ".SH ENVIRONMENT\n.TP\n.B PGARK_CONFIG\n"
          "The configuration file when \\fB\\-\\-config\\fR is not given.\n"
          ".TP\n.B NOTIFY_SOCKET\n"
          "Set by systemd for a Type=notify service: \\fBreceive\\fR reports READY=1, "
          "STATUS= and WATCHDOG=1 there.\n"
          ".TP\n.B JOURNAL_STREAM\n"
          "Set by systemd: when it names standard error, log lines carry a syslog priority "
          "prefix and no time stamp.\n"
          ".SH FILES\n.TP\n.I /etc/pgark/pgark.yaml\n"
          "The default configuration; every key is described in the example installed as\n"
          ".IR share/pgark/pgark.yaml.example .\n"
          ".SH SEE ALSO\n"
          "\\fBpg_receivewal\\fR(1), \\fBpg_basebackup\\fR(1), \\fBsystemd.service\\fR(5)\n",
          out);
}

/* ---- completion ------------------------------------------------------------------ */

/* What follows an option in a usage line: nothing (a flag), a file, a choice of
 * words, or a free value. */
struct opt_info {
    char name[48];
    bool file;
    char values[128]; /* words separated by blanks, "" when none */
};

struct opt_list {
    struct opt_info *o;
    size_t n;
};

static struct opt_info *opt_find(struct opt_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->o[i].name, name) == 0)
            return &l->o[i];
    }
    return NULL;
}

/* Every "--name" of text, with what follows it ("--html FILE", "--checkpoint
 * fast|spread"); duplicates once. */
static void opt_scan(struct opt_list *l, const char *text)
{
    for (const char *p = text; (p = strstr(p, "--")) != NULL;) {
        const char *start = p;
        p += 2;
        while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-')
            p++;
        size_t len = (size_t)(p - start);
        if (len <= 2 || len >= sizeof(l->o[0].name))
            continue;
        char name[48];
        memcpy(name, start, len);
        name[len] = '\0';
        struct opt_info *o = opt_find(l, name);
        if (!o) {
            l->o = xrealloc(l->o, (l->n + 1) * sizeof(*l->o));
            o = &l->o[l->n++];
            memset(o, 0, sizeof(*o));
            memcpy(o->name, name, len + 1);
        }
        if (*p != ' ' && *p != '=')
            continue;
        /* The argument: up to a blank or a bracket. */
        const char *a = p + 1, *e = a;
        while (*e && *e != ' ' && *e != ']' && *e != '[' && *e != '\n')
            e++;
        char arg[128];
        size_t alen = (size_t)(e - a) < sizeof(arg) - 1 ? (size_t)(e - a) : sizeof(arg) - 1;
        memcpy(arg, a, alen);
        arg[alen] = '\0';
        if (!strcmp(arg, "FILE") || !strcmp(arg, "DIR")) {
            o->file = true;
            continue;
        }
        /* Lowercase alternatives are the words to offer (LABEL|latest: latest). */
        char *save = NULL;
        for (char *w = strtok_r(arg, "|", &save); w; w = strtok_r(NULL, "|", &save)) {
            bool word = *w && strncmp(w, "--", 2) != 0;
            for (const char *c = w; *c && word; c++)
                word = islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-';
            if (!word || strstr(o->values, w))
                continue;
            size_t used = strlen(o->values);
            if (used + strlen(w) + 2 < sizeof(o->values))
                snprintf(o->values + used, sizeof(o->values) - used, "%s%s", used ? " " : "", w);
        }
    }
}

/* The words a command's first argument may be, when its usage names them ("completion
 * bash|zsh": "bash zsh"), blank-separated into out; "" when none. */
static void positional_words(const char *usage, char *out, size_t cap)
{
    out[0] = '\0';
    const char *a = strchr(usage, ' ');
    if (!a || a[1] == '-' || a[1] == '[')
        return;
    a++;
    size_t len = strcspn(a, " \n");
    if (len >= cap || !memchr(a, '|', len))
        return;
    for (size_t i = 0; i < len; i++) {
        char c = a[i];
        if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-' || c == '|'))
            return;
        out[i] = c == '|' ? ' ' : c;
    }
    out[len] = '\0';
}

static void opt_words(FILE *out, const struct opt_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        fprintf(out, "%s%s", i ? " " : "", l->o[i].name);
}

/* The options of every command and the global ones together: what each takes. */
static void all_options(const struct helpdoc *d, struct opt_list *all)
{
    for (size_t i = 0; i < d->nglobals; i++) {
        opt_scan(all, d->globals[i].option);
        struct opt_info *o = all->n ? &all->o[all->n - 1] : NULL;
        if (o && d->globals[i].values)
            snprintf(o->values, sizeof(o->values), "%s", d->globals[i].values);
    }
    for (size_t i = 0; i < d->ncommands; i++)
        opt_scan(all, d->commands[i].usage);
}

static void command_words(FILE *out, const struct helpdoc *d)
{
    for (size_t i = 0; i < d->ncommands; i++)
        fprintf(out, "%s%s", i ? " " : "", d->commands[i].name);
}

static void global_words(FILE *out, const struct helpdoc *d)
{
    struct opt_list g = {0};
    for (size_t i = 0; i < d->nglobals; i++)
        opt_scan(&g, d->globals[i].option);
    opt_words(out, &g);
    fputs(" --help --version", out);
    free(g.o);
}

/* The global options that take a value (the scan skips their value). */
static void global_valued(FILE *out, const struct helpdoc *d)
{
    for (size_t i = 0, n = 0; i < d->nglobals; i++) {
        const char *opt = d->globals[i].option;
        const char *sp = strchr(opt, ' ');
        if (sp && strncmp(opt, "--config ", 9) != 0) /* --config is handled apart */
            fprintf(out, "%s%.*s", n++ ? "|" : "", (int)(sp - opt), opt);
    }
}

/* What the two shells' scripts differ in; the rest is written once (completion_script). */
struct shell_syntax {
    const char *head;        /* the function up to the loop's valued global options */
    const char *loop_end;    /* after them: the rest of the loop, then "case $prev in" */
    const char *cluster;     /* the --cluster case */
    const char *files;       /* the action for the options that take a file */
    const char *values;      /* an option with words: printf format (name, words) */
    const char *globals;     /* no command yet, a "-" typed: offer the global options */
    const char *commands;    /* ... else the commands */
    const char *per_command; /* after "fi": open the case on the command */
    const char *option;      /* a command's words: printf format (name, words) */
    const char *tail;
};

static const struct shell_syntax bash_syntax = {
    .head = "# bash completion for pgark (pgark completion bash)\n"
            "_pgark() {\n"
            "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
            "    local i cmd= cfg=() opts=\n"
            "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
            "        case ${COMP_WORDS[i]} in\n"
            "        --config) cfg=(--config \"${COMP_WORDS[i+1]}\"); ((i++)) ;;\n"
            "        --config=*) cfg=(\"${COMP_WORDS[i]}\") ;;\n",
    .loop_end = ") ((i++)) ;;\n"
                "        -*) ;;\n"
                "        *) cmd=${COMP_WORDS[i]}; break ;;\n"
                "        esac\n"
                "    done\n"
                "    case $prev in\n",
    .cluster = "    --cluster)\n"
               "        COMPREPLY=($(compgen -W \"$(pgark \"${cfg[@]}\" completion --clusters "
               "2>/dev/null)\" -- \"$cur\"))\n"
               "        return ;;\n",
    .files = ")\n        COMPREPLY=($(compgen -f -- \"$cur\"))\n        return ;;\n",
    .values = "    %s)\n        COMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n        return ;;\n",
    .globals = "    esac\n"
               "    if [[ -z $cmd ]]; then\n"
               "        if [[ $cur == -* ]]; then\n"
               "            opts=\"%s\"\n",
    .commands = "        else\n"
                "            opts=\"%s\"\n"
                "        fi\n",
    .per_command = "    else\n"
                   "        case $cmd in\n",
    .option = "        %s) opts=\"%s\" ;;\n",
    .tail = "        esac\n"
            "    fi\n"
            "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
            "}\n"
            "complete -F _pgark pgark\n",
};

static const struct shell_syntax zsh_syntax = {
    .head = "#compdef pgark\n"
            "# zsh completion for pgark (pgark completion zsh): source it, or put it in a\n"
            "# directory of $fpath as _pgark.\n"
            "_pgark() {\n"
            "    local i cmd= prev=${words[CURRENT-1]}\n"
            "    local -a cfg\n"
            "    for ((i = 2; i < CURRENT; i++)); do\n"
            "        case ${words[i]} in\n"
            "        --config) cfg=(--config ${words[i+1]}); ((i++)) ;;\n"
            "        --config=*) cfg=(${words[i]}) ;;\n",
    .loop_end = ") ((i++)) ;;\n"
                "        -*) ;;\n"
                "        *) cmd=${words[i]}; break ;;\n"
                "        esac\n"
                "    done\n"
                "    case $prev in\n",
    .cluster = "    --cluster)\n"
               "        compadd -- ${(f)\"$(pgark $cfg completion --clusters 2>/dev/null)\"}\n"
               "        return ;;\n",
    .files = ")\n        _files\n        return ;;\n",
    .values = "    %s)\n        compadd -- %s\n        return ;;\n",
    .globals = "    esac\n"
               "    if [[ -z $cmd ]]; then\n"
               "        if [[ $PREFIX == -* ]]; then\n"
               "            compadd -- %s\n",
    .commands = "        else\n"
                "            compadd -- %s\n"
                "        fi\n"
                "        return\n",
    .per_command = "    fi\n"
                   "    case $cmd in\n",
    .option = "    %s) compadd -- %s ;;\n",
    .tail = "    esac\n"
            "}\n"
            "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
            "    _pgark \"$@\"\n"
            "else\n"
            "    compdef _pgark pgark\n"
            "fi\n",
};

/* What completes after command i: its first argument's words (completion bash|zsh), or
 * its options (help: and the commands); "" when nothing. Caller frees. */
static char *command_words_of(const struct helpdoc *d, size_t i)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct opt_list l = {0};
    char words[128];
    opt_scan(&l, d->commands[i].usage);
    positional_words(d->commands[i].usage, words, sizeof(words));
    if (!strcmp(d->commands[i].name, "help")) {
        opt_words(f, &l);
        fputc(' ', f);
        command_words(f, d);
    } else if (words[0]) {
        fputs(words, f);
    } else if (l.n) {
        opt_words(f, &l);
        fputs(" --help", f);
    }
    fclose(f);
    free(l.o);
    return text;
}

static void completion_script(const struct helpdoc *d, const struct shell_syntax *sh, FILE *out)
{
    struct opt_list all = {0};
    all_options(d, &all);
    fputs(sh->head, out);
    fputs("        ", out);
    global_valued(out, d);
    fputs(sh->loop_end, out);
    fputs(sh->cluster, out);
    bool any = false;
    for (size_t i = 0; i < all.n; i++) {
        if (all.o[i].file) {
            fprintf(out, "%s%s", any ? "|" : "    ", all.o[i].name);
            any = true;
        }
    }
    if (any)
        fputs(sh->files, out);
    for (size_t i = 0; i < all.n; i++) {
        if (all.o[i].values[0])
            fprintf(out, sh->values, all.o[i].name, all.o[i].values);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    global_words(f, d);
    fclose(f);
    fprintf(out, sh->globals, text);
    free(text);
    f = open_memstream(&text, &len);
    command_words(f, d);
    fclose(f);
    fprintf(out, sh->commands, text);
    free(text);
    fputs(sh->per_command, out);
    for (size_t i = 0; i < d->ncommands; i++) {
        char *words = command_words_of(d, i);
        if (words[0])
            fprintf(out, sh->option, d->commands[i].name, words);
        free(words);
    }
    fputs(sh->tail, out);
    free(all.o);
}

int helpdoc_completion(const struct helpdoc *d, const char *shell, FILE *out)
{
    if (!strcmp(shell, "bash"))
        completion_script(d, &bash_syntax, out);
    else if (!strcmp(shell, "zsh"))
        completion_script(d, &zsh_syntax, out);
    else
        return err_set(ERR_USAGE, "no completion for shell \"%s\" (expected bash or zsh)", shell);
    return 0;
}

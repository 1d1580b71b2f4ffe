/*
 * drill_sql.c — the checks file of `drill --sql FILE`: statements a DBA writes to say
 * what the restored data must look like, each returning one row whose first column is
 * true. Split the way psql would: a ';' outside quotes and comments ends a statement,
 * so a check may span lines or hold a ';' in a string, and "\c DB" picks the database
 * of the checks after it.
 */
#include "drill_int.h"

#include "pgark/error.h"
#include "pgark/mem.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct splitter {
    const char *what;
    const char *db;
    struct buf cur;
    int cur_line;
    struct drill_sql *out;
    size_t n;
};

static bool blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!isspace((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* The first character of s that is not a blank or in a comment ("" when none). */
static const char *skip_noise(const char *s)
{
    while (*s) {
        if (isspace((unsigned char)*s)) {
            s++;
        } else if (s[0] == '-' && s[1] == '-') {
            s += strcspn(s, "\n");
        } else if (s[0] == '/' && s[1] == '*') {
            int depth = 0;
            do {
                if (s[0] == '/' && s[1] == '*')
                    depth++, s += 2;
                else if (s[0] == '*' && s[1] == '/')
                    depth--, s += 2;
                else
                    s++;
            } while (*s && depth > 0);
        } else {
            return s;
        }
    }
    return s;
}

/* Whether the statement so far holds anything but blanks and comments. */
static bool has_code(const char *s)
{
    return *skip_noise(s) != '\0';
}

static void emit(struct splitter *sp)
{
    const char *t = (const char *)(sp->cur.data ? sp->cur.data : (uint8_t *)"");
    if (has_code(t)) {
        /* The comments before it are the previous line's, or say what it checks: not
         * part of it. */
        size_t start = (size_t)(skip_noise(t) - t), end = strlen(t);
        while (end > start && isspace((unsigned char)t[end - 1]))
            end--;
        sp->out = xrealloc(sp->out, (sp->n + 1) * sizeof(*sp->out));
        sp->out[sp->n].text = xstrndup(t + start, end - start);
        sp->out[sp->n].database = xstrdup(sp->db);
        sp->out[sp->n].line = sp->cur_line;
        sp->n++;
    }
    buf_reset(&sp->cur);
    sp->cur_line = 0;
}

/* "\c NAME" / "\connect NAME" at line. */
static int meta_command(struct splitter *sp, const char *line, size_t len, int lineno,
                        char **db_owned)
{
    const char *p = line + 1;
    const char *end = line + len;
    size_t w = 0;
    while (p + w < end && !isspace((unsigned char)p[w]))
        w++;
    if (!((w == 1 && p[0] == 'c') || (w == 7 && !strncmp(p, "connect", 7))))
        return err_set(ERR_USAGE,
                       "%s:%d: only \\c DATABASE (or \\connect) is understood, not "
                       "\"%.*s\"",
                       sp->what, lineno, (int)(w + 1), line);
    p += w;
    while (p < end && isspace((unsigned char)*p))
        p++;
    const char *q = end;
    while (q > p && isspace((unsigned char)q[-1]))
        q--;
    if (q == p)
        return err_set(ERR_USAGE, "%s:%d: \\c needs a database name", sp->what, lineno);
    /* A quoted name is taken as it is between the quotes. */
    if (q - p >= 2 && ((*p == '"' && q[-1] == '"') || (*p == '\'' && q[-1] == '\'')))
        p++, q--;
    free(*db_owned);
    *db_owned = xstrndup(p, (size_t)(q - p));
    sp->db = *db_owned;
    return 0;
}

/* Where the splitter is in the text: in code, a quoted string or name, a comment. */
enum lex_state { CODE, SQUOTE, ESQUOTE, DQUOTE, DOLLAR, LINE_COMMENT, BLOCK_COMMENT };

struct lexer {
    const char *text;
    enum lex_state st;
    int line, open_line; /* the current line; where the open quote or comment began */
    int depth;           /* of nested block comments */
    char *dollar;        /* the tag of an open $tag$ quote, "$tag$" */
};

/* In code: the bytes at p that go into the statement (0: p is the ';' that ends it);
 * opens a quote or comment. */
static size_t lex_code(struct lexer *lx, const char *p)
{
    const char *text = lx->text;
    char c = *p;
    if (c == ';')
        return 0;
    if (c == '\'') {
        bool e = p > text && (p[-1] == 'E' || p[-1] == 'e') &&
                 (p - 1 == text || !(isalnum((unsigned char)p[-2]) || p[-2] == '_'));
        lx->st = e ? ESQUOTE : SQUOTE;
        lx->open_line = lx->line;
    } else if (c == '"') {
        lx->st = DQUOTE;
        lx->open_line = lx->line;
    } else if (c == '-' && p[1] == '-') {
        lx->st = LINE_COMMENT;
    } else if (c == '/' && p[1] == '*') {
        lx->st = BLOCK_COMMENT;
        lx->depth = 1;
        lx->open_line = lx->line;
        return 2;
    } else if (c == '$' && !(p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))) {
        /* $tag$ with a tag of letters, digits and '_' (not starting with a digit) */
        const char *q = p + 1;
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
        if (*q == '$' && !isdigit((unsigned char)p[1])) {
            free(lx->dollar);
            lx->dollar = xstrndup(p, (size_t)(q - p + 1));
            lx->st = DOLLAR;
            lx->open_line = lx->line;
            return (size_t)(q - p + 1);
        }
    }
    return 1;
}

/* In a quoted string ('...', E'...') or name ("..."): the bytes at p it takes; closes it. */
static size_t lex_quoted(struct lexer *lx, const char *p)
{
    char close = lx->st == DQUOTE ? '"' : '\'';
    if (lx->st == ESQUOTE && *p == '\\' && p[1]) {
        if (p[1] == '\n')
            lx->line++;
        return 2;
    }
    if (*p == close) {
        if (p[1] == close)
            return 2; /* doubled: the quote itself */
        lx->st = CODE;
    }
    return 1;
}

/* In a dollar quote or a comment: the bytes at p it takes; closes it. */
static size_t lex_other(struct lexer *lx, const char *p)
{
    char c = *p;
    switch (lx->st) {
    case DOLLAR: {
        size_t tl = strlen(lx->dollar);
        if (c == '$' && !strncmp(p, lx->dollar, tl)) {
            lx->st = CODE;
            return tl;
        }
        return 1;
    }
    case LINE_COMMENT:
        if (c == '\n')
            lx->st = CODE;
        return 1;
    case BLOCK_COMMENT:
        if (c == '/' && p[1] == '*') {
            lx->depth++;
            return 2;
        }
        if (c == '*' && p[1] == '/') {
            if (--lx->depth == 0)
                lx->st = CODE;
            return 2;
        }
        return 1;
    default:
        return 1;
    }
}

/* At the start of a line in code: a meta-command (\c) is a whole line, between
 * statements. 1 when the line at *p was one (*p moved past it), 0 when not. */
static int lex_meta(struct splitter *sp, struct lexer *lx, const char **p, char **db_owned)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\\')
        return 0;
    size_t len = strcspn(s, "\n");
    const char *cur = (const char *)(sp->cur.data ? sp->cur.data : (uint8_t *)"");
    if (has_code(cur))
        return err_set(ERR_USAGE,
                       "%s:%d: \\c inside a statement (the one from line %d "
                       "has no ';' yet)",
                       sp->what, lx->line, sp->cur_line);
    int rc = meta_command(sp, s, len, lx->line, db_owned);
    if (rc < 0)
        return rc;
    buf_reset(&sp->cur);
    sp->cur_line = 0;
    *p = s + len;
    return 1;
}

/* The text ended: a quote or comment still open is an error. */
static int lex_unclosed(const struct lexer *lx, const char *what)
{
    switch (lx->st) {
    case SQUOTE:
    case ESQUOTE:
        return err_set(ERR_USAGE, "%s:%d: a quoted string ('...') is not closed", what,
                       lx->open_line);
    case DQUOTE:
        return err_set(ERR_USAGE, "%s:%d: a quoted name (\"...\") is not closed", what,
                       lx->open_line);
    case DOLLAR:
        return err_set(ERR_USAGE, "%s:%d: a dollar-quoted string (%s...%s) is not closed", what,
                       lx->open_line, lx->dollar, lx->dollar);
    case BLOCK_COMMENT:
        return err_set(ERR_USAGE, "%s:%d: a comment (/* ... */) is not closed", what,
                       lx->open_line);
    default:
        return 0;
    }
}

int drill_sql_parse(const char *text, const char *what, const char *default_db,
                    struct drill_sql **out, size_t *n)
{
    struct splitter sp = {.what = what, .db = default_db, .cur = BUF_INIT};
    struct lexer lx = {.text = text, .st = CODE, .line = 1};
    char *db_owned = NULL;
    int rc = 0;

    *out = NULL;
    *n = 0;
    for (const char *p = text; *p;) {
        if (lx.st == CODE && (p == text || p[-1] == '\n')) {
            if ((rc = lex_meta(&sp, &lx, &p, &db_owned)) < 0)
                goto out;
            if (rc > 0) {
                rc = 0;
                continue;
            }
        }
        char c = *p;
        if (c == '\n')
            lx.line++;
        /* A statement starts at its first character that is not a blank or a comment. */
        if (lx.st == CODE && !sp.cur_line && !isspace((unsigned char)c) &&
            !(c == '-' && p[1] == '-') && !(c == '/' && p[1] == '*'))
            sp.cur_line = lx.line;
        size_t take = lx.st == CODE                                            ? lex_code(&lx, p)
                      : lx.st == SQUOTE || lx.st == ESQUOTE || lx.st == DQUOTE ? lex_quoted(&lx, p)
                                                                               : lex_other(&lx, p);
        if (take == 0) { /* ';' */
            emit(&sp);
            p++;
            continue;
        }
        buf_append(&sp.cur, p, take);
        p += take;
    }
    if ((rc = lex_unclosed(&lx, what)) < 0)
        goto out;
    if (sp.cur.len && !blank((const char *)sp.cur.data, sp.cur.len))
        emit(&sp);
    if (sp.n == 0) {
        rc = err_set(ERR_USAGE, "%s holds no SQL statement", what);
        goto out;
    }
    *out = sp.out;
    *n = sp.n;
    sp.out = NULL;
    sp.n = 0;
out:
    drill_sql_free(sp.out, sp.n);
    buf_free(&sp.cur);
    free(db_owned);
    free(lx.dollar);
    return rc;
}

void drill_sql_free(struct drill_sql *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].text);
        free(s[i].database);
    }
    free(s);
}

char *drill_sql_shown(const char *text)
{
    struct buf b = BUF_INIT;
    bool space = false;
    for (const char *p = text; *p; p++) {
        if (isspace((unsigned char)*p)) {
            space = b.len > 0;
            continue;
        }
        if (space)
            buf_append(&b, " ", 1);
        space = false;
        buf_append(&b, p, 1);
        if (b.len >= 100 && p[1]) {
            buf_append_str(&b, "...");
            break;
        }
    }
    buf_append(&b, "", 0);
    return buf_steal(&b);
}

/*
 * pq_dl.c — libpq, loaded on first use.
 *
 * pgark is not linked with libpq: PostgreSQL runs `pgark wal-fetch` once per WAL
 * segment, serially with replay, and it never talks to a server, yet linking libpq
 * (with gssapi, ldap and their kin) cost every such call milliseconds of dynamic
 * loading. These definitions of the functions pgark uses forward to libpq.so.5,
 * dlopen'ed by the first of them (pgark/dl.h: a library that cannot be loaded ends
 * the process).
 */
#include <libpq-fe.h>

#include "pgark/dl.h"

#define PQ_FUNCTIONS(X)                                                                            \
    X(PQclear)                                                                                     \
    X(PQconnectdbParams)                                                                           \
    X(PQconnectionNeedsPassword)                                                                   \
    X(PQconninfoFree)                                                                              \
    X(PQconninfoParse)                                                                             \
    X(PQconsumeInput)                                                                              \
    X(PQerrorMessage)                                                                              \
    X(PQexec)                                                                                      \
    X(PQexecParams)                                                                                \
    X(PQfinish)                                                                                    \
    X(PQflush)                                                                                     \
    X(PQfname)                                                                                     \
    X(PQfreemem)                                                                                   \
    X(PQgetCopyData)                                                                               \
    X(PQgetResult)                                                                                 \
    X(PQgetisnull)                                                                                 \
    X(PQgetlength)                                                                                 \
    X(PQgetvalue)                                                                                  \
    X(PQhost)                                                                                      \
    X(PQisBusy)                                                                                    \
    X(PQnfields)                                                                                   \
    X(PQntuples)                                                                                   \
    X(PQport)                                                                                      \
    X(PQputCopyData)                                                                               \
    X(PQputCopyEnd)                                                                                \
    X(PQresStatus)                                                                                 \
    X(PQresultErrorField)                                                                          \
    X(PQresultStatus)                                                                              \
    X(PQsendQuery)                                                                                 \
    X(PQserverVersion)                                                                             \
    X(PQsocket)                                                                                    \
    X(PQstatus)                                                                                    \
    X(PQuser)

enum { PQ_FUNCTIONS(DL_ENUM) PQ_NFUNCTIONS };
static const char *const names[] = {PQ_FUNCTIONS(DL_NAME)};
static void *syms[PQ_NFUNCTIONS];
static struct dl_library libpq = {
    .soname = "libpq.so.5", .package = "libpq5", .names = names, .syms = syms, .n = PQ_NFUNCTIONS};

#define REAL(name) ((__typeof__(&name))dl_sym(&libpq, DL_##name))

/* connections */

PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname)
{
    return REAL(PQconnectdbParams)(keywords, values, expand_dbname);
}

void PQfinish(PGconn *conn)
{
    REAL(PQfinish)(conn);
}

ConnStatusType PQstatus(const PGconn *conn)
{
    return REAL(PQstatus)(conn);
}

char *PQerrorMessage(const PGconn *conn)
{
    return REAL(PQerrorMessage)(conn);
}

int PQconnectionNeedsPassword(const PGconn *conn)
{
    return REAL(PQconnectionNeedsPassword)(conn);
}

int PQserverVersion(const PGconn *conn)
{
    return REAL(PQserverVersion)(conn);
}

int PQsocket(const PGconn *conn)
{
    return REAL(PQsocket)(conn);
}

char *PQhost(const PGconn *conn)
{
    return REAL(PQhost)(conn);
}

char *PQport(const PGconn *conn)
{
    return REAL(PQport)(conn);
}

char *PQuser(const PGconn *conn)
{
    return REAL(PQuser)(conn);
}

PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
    return REAL(PQconninfoParse)(conninfo, errmsg);
}

void PQconninfoFree(PQconninfoOption *options)
{
    REAL(PQconninfoFree)(options);
}

/* queries and COPY */

PGresult *PQexec(PGconn *conn, const char *query)
{
    return REAL(PQexec)(conn, query);
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    return REAL(PQexecParams)(conn, command, nParams, paramTypes, paramValues, paramLengths,
                              paramFormats, resultFormat);
}

int PQsendQuery(PGconn *conn, const char *query)
{
    return REAL(PQsendQuery)(conn, query);
}

PGresult *PQgetResult(PGconn *conn)
{
    return REAL(PQgetResult)(conn);
}

int PQconsumeInput(PGconn *conn)
{
    return REAL(PQconsumeInput)(conn);
}

int PQisBusy(PGconn *conn)
{
    return REAL(PQisBusy)(conn);
}

int PQflush(PGconn *conn)
{
    return REAL(PQflush)(conn);
}

int PQgetCopyData(PGconn *conn, char **buffer, int async)
{
    return REAL(PQgetCopyData)(conn, buffer, async);
}

int PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
    return REAL(PQputCopyData)(conn, buffer, nbytes);
}

int PQputCopyEnd(PGconn *conn, const char *errormsg)
{
    return REAL(PQputCopyEnd)(conn, errormsg);
}

void PQfreemem(void *ptr)
{
    REAL(PQfreemem)(ptr);
}

/* results */

void PQclear(PGresult *res)
{
    REAL(PQclear)(res);
}

ExecStatusType PQresultStatus(const PGresult *res)
{
    return REAL(PQresultStatus)(res);
}

char *PQresStatus(ExecStatusType status)
{
    return REAL(PQresStatus)(status);
}

char *PQresultErrorField(const PGresult *res, int fieldcode)
{
    return REAL(PQresultErrorField)(res, fieldcode);
}

int PQntuples(const PGresult *res)
{
    return REAL(PQntuples)(res);
}

int PQnfields(const PGresult *res)
{
    return REAL(PQnfields)(res);
}

char *PQfname(const PGresult *res, int field_num)
{
    return REAL(PQfname)(res, field_num);
}

char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
    return REAL(PQgetvalue)(res, tup_num, field_num);
}

int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
    return REAL(PQgetisnull)(res, tup_num, field_num);
}

int PQgetlength(const PGresult *res, int tup_num, int field_num)
{
    return REAL(PQgetlength)(res, tup_num, field_num);
}

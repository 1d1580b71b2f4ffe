/*
 * pq_dl.c — libpq, loaded on first use.
 *
 * pgark is not linked with libpq: PostgreSQL runs `pgark wal-fetch` once per WAL
 * segment, serially with replay, and it never talks to a server, yet linking libpq
 * (with gssapi, ldap and their kin) cost every such call milliseconds of dynamic
 * loading. These definitions of the functions pgark uses forward to libpq.so.5,
 * dlopen'ed by the first of them (pgark/dl.h: a library that cannot be loaded ends
 * the process). They keep libpq's own names, so src/pg reads as libpq's documented
 * calls (pgark/dl.h says why that is safe).
 */
#include <libpq-fe.h>

#include "pgark/dl.h"

#define PQ_FUNCTIONS(X)                                                                            \
    X(PQclear)                                                                                     \
    X(PQconndefaults)                                                                              \
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
    X(PQparameterStatus)                                                                           \
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

DL_LIBRARY(PQ_FUNCTIONS, "libpq.so.5", "libpq5");

/* connections */

PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname)
{
    return DL_REAL(PQconnectdbParams)(keywords, values, expand_dbname);
}

void PQfinish(PGconn *conn)
{
    DL_REAL(PQfinish)(conn);
}

ConnStatusType PQstatus(const PGconn *conn)
{
    return DL_REAL(PQstatus)(conn);
}

char *PQerrorMessage(const PGconn *conn)
{
    return DL_REAL(PQerrorMessage)(conn);
}

int PQconnectionNeedsPassword(const PGconn *conn)
{
    return DL_REAL(PQconnectionNeedsPassword)(conn);
}

int PQserverVersion(const PGconn *conn)
{
    return DL_REAL(PQserverVersion)(conn);
}

const char *PQparameterStatus(const PGconn *conn, const char *paramName)
{
    return DL_REAL(PQparameterStatus)(conn, paramName);
}

int PQsocket(const PGconn *conn)
{
    return DL_REAL(PQsocket)(conn);
}

char *PQhost(const PGconn *conn)
{
    return DL_REAL(PQhost)(conn);
}

char *PQport(const PGconn *conn)
{
    return DL_REAL(PQport)(conn);
}

char *PQuser(const PGconn *conn)
{
    return DL_REAL(PQuser)(conn);
}

PQconninfoOption *PQconninfoParse(const char *conninfo, char **errmsg)
{
    return DL_REAL(PQconninfoParse)(conninfo, errmsg);
}

PQconninfoOption *PQconndefaults(void)
{
    return DL_REAL(PQconndefaults)();
}

void PQconninfoFree(PQconninfoOption *options)
{
    DL_REAL(PQconninfoFree)(options);
}

/* queries and COPY */

PGresult *PQexec(PGconn *conn, const char *query)
{
    return DL_REAL(PQexec)(conn, query);
}

PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                       const char *const *paramValues, const int *paramLengths,
                       const int *paramFormats, int resultFormat)
{
    return DL_REAL(PQexecParams)(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                 paramFormats, resultFormat);
}

int PQsendQuery(PGconn *conn, const char *query)
{
    return DL_REAL(PQsendQuery)(conn, query);
}

PGresult *PQgetResult(PGconn *conn)
{
    return DL_REAL(PQgetResult)(conn);
}

int PQconsumeInput(PGconn *conn)
{
    return DL_REAL(PQconsumeInput)(conn);
}

int PQisBusy(PGconn *conn)
{
    return DL_REAL(PQisBusy)(conn);
}

int PQflush(PGconn *conn)
{
    return DL_REAL(PQflush)(conn);
}

int PQgetCopyData(PGconn *conn, char **buffer, int async)
{
    return DL_REAL(PQgetCopyData)(conn, buffer, async);
}

int PQputCopyData(PGconn *conn, const char *buffer, int nbytes)
{
    return DL_REAL(PQputCopyData)(conn, buffer, nbytes);
}

int PQputCopyEnd(PGconn *conn, const char *errormsg)
{
    return DL_REAL(PQputCopyEnd)(conn, errormsg);
}

void PQfreemem(void *ptr)
{
    DL_REAL(PQfreemem)(ptr);
}

/* results */

void PQclear(PGresult *res)
{
    DL_REAL(PQclear)(res);
}

ExecStatusType PQresultStatus(const PGresult *res)
{
    return DL_REAL(PQresultStatus)(res);
}

char *PQresStatus(ExecStatusType status)
{
    return DL_REAL(PQresStatus)(status);
}

char *PQresultErrorField(const PGresult *res, int fieldcode)
{
    return DL_REAL(PQresultErrorField)(res, fieldcode);
}

int PQntuples(const PGresult *res)
{
    return DL_REAL(PQntuples)(res);
}

int PQnfields(const PGresult *res)
{
    return DL_REAL(PQnfields)(res);
}

char *PQfname(const PGresult *res, int field_num)
{
    return DL_REAL(PQfname)(res, field_num);
}

char *PQgetvalue(const PGresult *res, int tup_num, int field_num)
{
    return DL_REAL(PQgetvalue)(res, tup_num, field_num);
}

int PQgetisnull(const PGresult *res, int tup_num, int field_num)
{
    return DL_REAL(PQgetisnull)(res, tup_num, field_num);
}

int PQgetlength(const PGresult *res, int tup_num, int field_num)
{
    return DL_REAL(PQgetlength)(res, tup_num, field_num);
}

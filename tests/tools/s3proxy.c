/*
 * s3proxy.c — the unit tests' fault proxy (tests/unit/lib/faultproxy.c) as a process,
 * for the integration tests: relays 127.0.0.1:<port printed on stdout> to
 * 127.0.0.1:UPSTREAM_PORT and keeps what it saw in STATS_FILE (rewritten atomically
 * every 100 ms and at exit) as "key value" lines: requests, connections, max_puts_open.
 * Runs until SIGTERM or SIGINT. DELAY_MS (optional) holds each request that long before
 * relaying it, as a store far away would (benchmarks of what waits on round trips).
 *
 *     s3proxy UPSTREAM_PORT STATS_FILE [DELAY_MS]
 */
#include "faultproxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void write_stats(struct faultproxy *p, const char *path)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "requests %d\nconnections %d\nmax_puts_open %d\n", faultproxy_requests(p),
            faultproxy_connections(p), faultproxy_max_puts_open(p));
    if (fclose(f) == 0)
        rename(tmp, path);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: s3proxy UPSTREAM_PORT STATS_FILE [DELAY_MS]\n");
        return 2;
    }
    struct faultproxy *p = faultproxy_start(atoi(argv[1]));
    if (!p)
        return 1;
    if (argc == 4)
        faultproxy_set_delay(p, atoi(argv[3]));
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("%d\n", faultproxy_port(p));
    fflush(stdout);
    while (!stop) {
        write_stats(p, argv[2]);
        nanosleep(&(struct timespec){0, 100 * 1000000}, NULL);
    }
    write_stats(p, argv[2]);
    faultproxy_stop(p);
    return 0;
}

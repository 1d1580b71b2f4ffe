/*
 * pgfault — a loopback proxy for the PostgreSQL protocol that corrupts one WAL page
 * header in a replication stream, for the integration tests (tests/t/021).
 *
 *   pgfault PORT UPSTREAM CONTROL
 *
 * Listens on 127.0.0.1:PORT and relays every connection to UPSTREAM (a Unix socket
 * path, or HOST:PORT), one child process per connection. An SSLRequest or
 * GSSENCRequest from the client is answered 'N' here, so the server's replies are
 * always framed messages (type byte, int32 length). Those are parsed; inside each
 * CopyData that carries XLogData ('w', int64 dataStart, int64 walEnd, int64
 * sendTime, WAL bytes), the bytes are tracked by LSN and the page header chosen by
 * the CONTROL file is corrupted wherever its bytes pass, whatever the message
 * boundaries. CONTROL is read before every XLogData message (write it with a rename),
 * so a test can switch the fault on and off at any time; a missing or empty file, or
 * "pass", relays unchanged. Otherwise it holds "KIND LSN [split]":
 *
 *   KIND   magic     xlp_magic's low byte inverted
 *          pageaddr  xlp_pageaddr XOR 0x2000 (the address of a neighbouring page)
 *          tli       xlp_tli + 1
 *   LSN    X/X: the page is the first one that starts at or after it
 *   split  the XLogData message holding the page's first header byte is cut in two
 *          at page + 12 (after xlp_tli), so the header straddles two messages
 *
 * Each corruption is logged on stderr ("pgfault: corrupted KIND at X/X"). SIGTERM
 * ends the proxy and its connections (it runs in a process group of its own).
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <netdb.h>

#define BLCKSZ 8192
#define XLOGDATA_HDR 25 /* 'w' + 3 int64 */
#define SPLIT_AT 12

enum kind { PASS, MAGIC, PAGEADDR, TLI };

struct fault {
    enum kind kind;
    uint64_t page;
    bool split;
};

static const char *control_path;

static void die(const char *what)
{
    fprintf(stderr, "pgfault: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t get64be(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put64be(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32be(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void read_control(struct fault *f)
{
    char buf[128] = "", kind[16] = "", extra[16] = "";
    unsigned hi = 0, lo = 0;
    f->kind = PASS;
    FILE *fp = fopen(control_path, "r");
    if (!fp)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    if (sscanf(buf, "%15s %X/%X %15s", kind, &hi, &lo, extra) < 3)
        return;
    uint64_t lsn = (uint64_t)hi << 32 | lo;
    f->page = (lsn + BLCKSZ - 1) / BLCKSZ * BLCKSZ;
    f->split = strcmp(extra, "split") == 0;
    if (strcmp(kind, "magic") == 0)
        f->kind = MAGIC;
    else if (strcmp(kind, "pageaddr") == 0)
        f->kind = PAGEADDR;
    else if (strcmp(kind, "tli") == 0)
        f->kind = TLI;
}

/* The page header field each kind changes: offset in the page and the new byte
 * given the old one (WAL is little-endian). */
static bool corrupt_byte(const struct fault *f, uint64_t lsn, uint8_t *b)
{
    if (f->kind == PASS || lsn < f->page || lsn >= f->page + 24)
        return false;
    size_t off = (size_t)(lsn - f->page);
    switch (f->kind) {
    case MAGIC:
        if (off != 0)
            return false;
        *b ^= 0xFF;
        return true;
    case PAGEADDR:
        if (off != 9)
            return false;
        *b ^= 0x20;
        return true;
    case TLI:
        if (off != 4)
            return false;
        *b += 1;
        return true;
    default:
        return false;
    }
}

static const char *kind_name(enum kind k)
{
    return k == MAGIC ? "magic" : k == PAGEADDR ? "pageaddr" : k == TLI ? "tli" : "pass";
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            exit(0); /* the peer went away: so does this connection */
        p += w;
        n -= (size_t)w;
    }
}

/* Forward one CopyData message (type 'd') whose body is msg[5..]. */
static void forward_xlogdata(int out, uint8_t *msg, size_t len)
{
    struct fault f;
    read_control(&f);
    uint8_t *body = msg + 5;
    size_t body_len = len - 5;
    uint64_t start = get64be(body + 1);
    uint8_t *wal = body + XLOGDATA_HDR;
    size_t wal_len = body_len - XLOGDATA_HDR;
    bool hit = false;
    for (size_t i = 0; i < wal_len; i++)
        hit |= corrupt_byte(&f, start + i, &wal[i]);
    if (hit) {
        fprintf(stderr, "pgfault: corrupted %s at %X/%X\n", kind_name(f.kind),
                (unsigned)(f.page >> 32), (unsigned)f.page);
    }
    uint64_t cut = f.page + SPLIT_AT;
    if (f.kind == PASS || !f.split || cut <= start || cut >= start + wal_len) {
        write_all(out, msg, len);
        return;
    }
    /* Two messages: [start, cut) and [cut, end), each with its own XLogData header. */
    size_t first = (size_t)(cut - start);
    uint8_t head[5 + XLOGDATA_HDR];
    memcpy(head, msg, sizeof(head));
    put32be(head + 1, (uint32_t)(4 + XLOGDATA_HDR + first));
    write_all(out, head, sizeof(head));
    write_all(out, wal, first);
    put32be(head + 1, (uint32_t)(4 + XLOGDATA_HDR + wal_len - first));
    put64be(head + 6, cut);
    write_all(out, head, sizeof(head));
    write_all(out, wal + first, wal_len - first);
    fprintf(stderr, "pgfault: split the header at %X/%X across two messages\n",
            (unsigned)(f.page >> 32), (unsigned)f.page);
}

struct framer {
    uint8_t *buf;
    size_t have, cap;
};

/* Take bytes from the server, forward each complete message to the client. */
static void server_bytes(struct framer *fr, int client, const uint8_t *p, size_t n)
{
    if (fr->have + n > fr->cap) {
        fr->cap = (fr->have + n) * 2;
        fr->buf = realloc(fr->buf, fr->cap);
        if (!fr->buf)
            die("realloc");
    }
    memcpy(fr->buf + fr->have, p, n);
    fr->have += n;
    size_t done = 0;
    while (fr->have - done >= 5) {
        uint8_t *m = fr->buf + done;
        size_t len = 1 + (size_t)get32be(m + 1);
        if (fr->have - done < len)
            break;
        if (m[0] == 'd' && len >= 5 + XLOGDATA_HDR && m[5] == 'w')
            forward_xlogdata(client, m, len);
        else
            write_all(client, m, len);
        done += len;
    }
    memmove(fr->buf, fr->buf + done, fr->have - done);
    fr->have -= done;
}

static int connect_upstream(const char *target)
{
    int fd;
    if (target[0] == '/') {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", target);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            die("connect to upstream");
        return fd;
    }
    char host[256];
    snprintf(host, sizeof(host), "%s", target);
    char *colon = strrchr(host, ':');
    if (!colon) {
        fprintf(stderr, "pgfault: upstream \"%s\" is neither a path nor HOST:PORT\n", target);
        exit(2);
    }
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        fprintf(stderr, "pgfault: cannot resolve \"%s\"\n", target);
        exit(1);
    }
    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die("connect to upstream");
    freeaddrinfo(ai);
    return fd;
}

static void read_exact(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            exit(0);
        p += r;
        n -= (size_t)r;
    }
}

/* The client's first packets: SSL and GSS encryption requests are refused here;
 * the startup packet goes to the server. */
static void startup(int client, int server)
{
    for (;;) {
        uint8_t head[8];
        read_exact(client, head, 8);
        uint32_t len = get32be(head), code = get32be(head + 4);
        if (len == 8 && (code == 80877103 || code == 80877104)) {
            write_all(client, (const uint8_t *)"N", 1);
            continue;
        }
        if (len < 8 || len > 10000) {
            fprintf(stderr, "pgfault: bad startup packet length %u\n", len);
            exit(1);
        }
        uint8_t *pkt = malloc(len);
        if (!pkt)
            die("malloc");
        memcpy(pkt, head, 8);
        read_exact(client, pkt + 8, len - 8);
        write_all(server, pkt, len);
        free(pkt);
        return;
    }
}

static void relay(int client, const char *target)
{
    int server = connect_upstream(target);
    struct framer fr = {0};
    startup(client, server);
    struct pollfd pf[2] = {{.fd = client, .events = POLLIN}, {.fd = server, .events = POLLIN}};
    uint8_t buf[65536];
    for (;;) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int i = 0; i < 2; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(pf[i].fd, buf, sizeof(buf));
            if (r <= 0)
                exit(0);
            if (i == 0)
                write_all(server, buf, (size_t)r);
            else
                server_bytes(&fr, client, buf, (size_t)r);
        }
    }
}

static void on_term(int sig)
{
    (void)sig;
    signal(SIGTERM, SIG_DFL);
    kill(0, SIGTERM);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: pgfault PORT UPSTREAM CONTROL\n");
        return 2;
    }
    control_path = argv[3];
    setpgid(0, 0);
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 16) < 0)
        die("listen");
    fprintf(stderr, "pgfault: listening on 127.0.0.1:%s, relaying to %s\n", argv[1], argv[2]);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid == 0) {
            close(ls);
            signal(SIGTERM, SIG_DFL);
            relay(c, argv[2]);
        }
        close(c);
    }
}

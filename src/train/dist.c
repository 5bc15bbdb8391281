/* Rank environment, TCP rendezvous and the one-machine launcher (train/dist.h). */
#define _GNU_SOURCE
#include "train/dist.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"

#define MAGIC "MRWD"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int env_int(const char *name, long lo, long hi, long dflt, long *out, mrw_error *err) {
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = dflt;
        return 0;
    }
    char *end;
    errno = 0;
    const long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi) {
        mrw_err(err, MRW_E_ARG, "distributed: %s='%s' is not an integer in [%ld, %ld]", name, v, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

mrw_status mrw_dist_env_read(mrw_dist_env *e, int *distributed, mrw_error *err) {
    memset(e, 0, sizeof *e);
    e->world = 1;
    *distributed = 0;
    long world, rank, local, port;
    if (env_int("WORLD_SIZE", 1, 1 << 20, 1, &world, err)) return MRW_E_ARG;
    if (env_int("MASTER_PORT", 1, 65535, 29500, &port, err)) return MRW_E_ARG;
    if (getenv("MRW_DIST_PORT") && env_int("MRW_DIST_PORT", 1, 65535, port, &port, err)) return MRW_E_ARG;
    const char *t = getenv("MRW_DIST_TIMEOUT");
    e->timeout_s = 300;
    if (t && *t) {
        char *end;
        const double x = strtod(t, &end);
        if (end == t || *end || !(x > 0) || x > 1e6)
            return mrw_err(err, MRW_E_ARG, "distributed: MRW_DIST_TIMEOUT='%s' is not a number of seconds > 0", t);
        e->timeout_s = x;
    }
    e->port = (int)port;
    const char *addr = getenv("MASTER_ADDR");
    if (!addr || !*addr) addr = "127.0.0.1";
    if (strlen(addr) >= sizeof e->addr) return mrw_err(err, MRW_E_ARG, "distributed: MASTER_ADDR is too long");
    snprintf(e->addr, sizeof e->addr, "%s", addr);
    if (world == 1) return MRW_OK;
    if (!getenv("RANK") || !*getenv("RANK"))
        return mrw_err(err, MRW_E_ARG, "distributed: WORLD_SIZE=%ld but RANK is not set (the launcher must give "
                                       "each process RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)", world);
    if (env_int("RANK", 0, world - 1, 0, &rank, err)) return MRW_E_ARG;
    if (env_int("LOCAL_RANK", 0, 1 << 16, rank, &local, err)) return MRW_E_ARG;
    e->world = (int)world, e->rank = (int)rank, e->local_rank = (int)local;
    *distributed = 1;
    return MRW_OK;
}

/* ------------------------------------------------------------------------------------------ sockets */

/* Full read/write with a deadline (the socket is non-blocking). 0 = done, -1 = error/timeout (errno). */
static int io_full(int fd, void *buf, size_t n, int writing, double deadline) {
    char *p = buf;
    while (n) {
        const double left = deadline - now_s();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {fd, writing ? POLLOUT : POLLIN, 0};
        const int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = ETIMEDOUT;
            return -1;
        }
        const ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) {
            if (k == 0) errno = ECONNRESET;
            return -1;
        }
        p += k, n -= (size_t)k;
    }
    return 0;
}

static void put_u32(unsigned char *b, uint32_t x) {
    b[0] = (unsigned char)(x >> 24), b[1] = (unsigned char)(x >> 16), b[2] = (unsigned char)(x >> 8),
    b[3] = (unsigned char)x;
}
static uint32_t get_u32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int set_nonblock(int fd) {
    const int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static mrw_status serve(const mrw_dist_env *e, const uint8_t *id, size_t n, mrw_error *err) {
    /* the wildcard address of MASTER_ADDR's family (rank 0 runs on that node) */
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int family = AF_INET;
    if (getaddrinfo(e->addr, NULL, &hints, &res) == 0 && res) family = res->ai_family;
    if (res) freeaddrinfo(res);
    res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", e->port);
    hints.ai_family = family;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(NULL, port, &hints, &res);
    if (rc || !res)
        return mrw_err(err, MRW_E_IO, "distributed: rank 0: cannot resolve a listening address: %s", gai_strerror(rc));
    const int fd = socket(res->ai_family, SOCK_STREAM, 0);
    const int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 128) || set_nonblock(fd)) {
        const int e0 = errno;
        freeaddrinfo(res);
        if (fd >= 0) close(fd);
        return mrw_err(err, MRW_E_IO, "distributed: rank 0: cannot listen on port %d: %s (set MASTER_PORT, or "
                       "MRW_DIST_PORT, to a free port)", e->port, strerror(e0));
    }
    freeaddrinfo(res);
    const double deadline = now_s() + e->timeout_s;
    char *seen = calloc((size_t)e->world, 1);
    int served = 0;
    mrw_status s = seen ? MRW_OK : mrw_err(err, MRW_E_NOMEM, "out of memory");
    while (!s && served < e->world - 1) {
        const double left = deadline - now_s();
        struct pollfd pf = {fd, POLLIN, 0};
        const int r = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            s = mrw_err(err, MRW_E_IO, "distributed: rank 0: only %d of the %d other ranks reached port %d within %g "
                        "s (MRW_DIST_TIMEOUT); did every rank start, with the same MASTER_ADDR/MASTER_PORT?", served,
                        e->world - 1, e->port, e->timeout_s);
            break;
        }
        const int c = accept(fd, NULL, NULL);
        if (c < 0) continue;
        set_nonblock(c);
        unsigned char hello[16], reply[8];
        const double dl = now_s() + 10 < deadline ? now_s() + 10 : deadline;
        if (io_full(c, hello, sizeof hello, 0, dl) || memcmp(hello, MAGIC, 4)) {
            close(c); /* not one of ours (a port scanner, a stale rank): ignore it */
            continue;
        }
        const uint32_t rank = get_u32(hello + 4), world = get_u32(hello + 8), len = get_u32(hello + 12);
        const char *why = NULL;
        if ((int)world != e->world) why = "another WORLD_SIZE";
        else if (rank < 1 || (int)rank >= e->world) why = "a rank out of range";
        else if (seen[rank]) why = "a rank that already joined";
        else if (len != n) why = "another build (id size)";
        memcpy(reply, MAGIC, 4);
        put_u32(reply + 4, why ? 1u : 0u);
        int bad_io = io_full(c, reply, sizeof reply, 1, dl);
        if (!why && !bad_io) bad_io = io_full(c, (void *)id, n, 1, dl);
        close(c);
        if (why) {
            s = mrw_err(err, MRW_E_ARG, "distributed: rank 0 (WORLD_SIZE %d): rank %u (WORLD_SIZE %u) joined with %s",
                        e->world, rank, world, why);
            break;
        }
        if (!bad_io) seen[rank] = 1, served++;
    }
    free(seen);
    close(fd);
    return s;
}

/* Non-blocking connect with a deadline: 0 = connected. */
static int connect_by(int fd, const struct sockaddr *a, socklen_t al, double deadline) {
    if (connect(fd, a, al) == 0) return 0;
    if (errno != EINPROGRESS) return -1;
    for (;;) {
        const double left = deadline - now_s();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {fd, POLLOUT, 0};
        const int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = ETIMEDOUT;
            return -1;
        }
        int so = 0;
        socklen_t sl = sizeof so;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
        if (so) {
            errno = so;
            return -1;
        }
        return 0;
    }
}

static mrw_status fetch(const mrw_dist_env *e, uint8_t *id, size_t n, mrw_error *err) {
    const double deadline = now_s() + e->timeout_s;
    char port[16];
    snprintf(port, sizeof port, "%d", e->port);
    char last[256] = "no attempt";
    for (;;) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        const int rc = getaddrinfo(e->addr, port, &hints, &res);
        if (rc) snprintf(last, sizeof last, "cannot resolve the host: %s", gai_strerror(rc));
        for (struct addrinfo *ai = rc ? NULL : res; ai; ai = ai->ai_next) {
            const int fd = socket(ai->ai_family, SOCK_STREAM, 0);
            if (fd < 0) continue;
            set_nonblock(fd);
            const double dl = now_s() + 5 < deadline ? now_s() + 5 : deadline;
            if (connect_by(fd, ai->ai_addr, ai->ai_addrlen, dl)) {
                snprintf(last, sizeof last, "%s", strerror(errno));
                close(fd);
                continue;
            }
            unsigned char hello[16], reply[8];
            memcpy(hello, MAGIC, 4);
            put_u32(hello + 4, (uint32_t)e->rank);
            put_u32(hello + 8, (uint32_t)e->world);
            put_u32(hello + 12, (uint32_t)n);
            int bad = io_full(fd, hello, sizeof hello, 1, deadline) || io_full(fd, reply, sizeof reply, 0, deadline);
            if (!bad && (memcmp(reply, MAGIC, 4) || get_u32(reply + 4))) {
                close(fd);
                freeaddrinfo(res);
                return mrw_err(err, MRW_E_ARG, "distributed: rank %d: rank 0 at %s:%d refused this rank (WORLD_SIZE "
                               "%d): see rank 0's message", e->rank, e->addr, e->port, e->world);
            }
            if (!bad) bad = io_full(fd, id, n, 0, deadline);
            if (!bad) {
                close(fd);
                freeaddrinfo(res);
                return MRW_OK;
            }
            snprintf(last, sizeof last, "%s", strerror(errno));
            close(fd);
        }
        if (res) freeaddrinfo(res);
        if (now_s() + 0.2 >= deadline)
            return mrw_err(err, MRW_E_IO, "distributed: rank %d: cannot reach rank 0 at %s:%d within %g s (last "
                           "error: %s); check MASTER_ADDR / MASTER_PORT, that rank 0 runs and that the port is open "
                           "(MRW_DIST_TIMEOUT sets the wait)", e->rank, e->addr, e->port, e->timeout_s, last);
        usleep(200000);
    }
}

mrw_status mrw_dist_exchange(const mrw_dist_env *e, uint8_t *id, size_t n, mrw_error *err) {
    if (n < 1 || n > 4096) return mrw_err(err, MRW_E_ARG, "distributed: id of %zu bytes", n);
    if (e->world <= 1) return MRW_OK;
    return e->rank == 0 ? serve(e, id, n, err) : fetch(e, id, n, err);
}

int mrw_dist_free_port(void) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = 0;
    if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &al))
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ----------------------------------------------------------------------------------------- launcher */

int mrw_dist_launch(int n, const char *exe, char *const argv[], double grace_s, const char *who, mrw_error *err) {
    if (n < 1 || n > 4096) return mrw_err(err, MRW_E_ARG, "launch: %d processes", n), -1;
    pid_t *pid = calloc((size_t)n, sizeof *pid);
    if (!pid) return mrw_err(err, MRW_E_NOMEM, "out of memory"), -1;
    char buf[32];
    if (!getenv("MASTER_ADDR") || !*getenv("MASTER_ADDR")) setenv("MASTER_ADDR", "127.0.0.1", 1);
    if (!getenv("MASTER_PORT") || !*getenv("MASTER_PORT")) {
        const int port = mrw_dist_free_port();
        snprintf(buf, sizeof buf, "%d", port ? port : 29500);
        setenv("MASTER_PORT", buf, 1);
    }
    snprintf(buf, sizeof buf, "%d", n);
    setenv("WORLD_SIZE", buf, 1);
    setenv("LOCAL_WORLD_SIZE", buf, 1);
    fflush(NULL);
    int started = 0;
    for (; started < n; started++) {
        const pid_t p = fork();
        if (p < 0) break;
        if (p == 0) {
            snprintf(buf, sizeof buf, "%d", started);
            setenv("RANK", buf, 1);
            setenv("LOCAL_RANK", buf, 1);
            execv(exe, argv);
            fprintf(stderr, "%s: rank %d: cannot run %s: %s\n", who, started, exe, strerror(errno));
            _exit(127);
        }
        pid[started] = p;
    }
    int code = 0, alive = started, failed_rank = -1;
    if (started < n) {
        code = -1;
        mrw_err(err, MRW_E_IO, "launch: cannot start rank %d: %s", started, strerror(errno));
        for (int i = 0; i < started; i++) kill(pid[i], SIGTERM);
    }
    double kill_at = code ? now_s() + grace_s : 0;
    int killed = 0;
    while (alive > 0) {
        int st = 0;
        const pid_t p = waitpid(-1, &st, kill_at ? WNOHANG : 0);
        if (p < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p == 0) { /* (WNOHANG) some are still running after a failure */
            if (!killed && now_s() >= kill_at) {
                for (int i = 0; i < started; i++)
                    if (pid[i] > 0) kill(pid[i], SIGKILL);
                killed = 1;
            }
            usleep(20000);
            continue;
        }
        int r = -1;
        for (int i = 0; i < started; i++)
            if (pid[i] == p) r = i;
        if (r < 0) continue;
        pid[r] = 0;
        alive--;
        const int c = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1;
        if (c && !code && failed_rank < 0) {
            failed_rank = r;
            code = c;
            if (WIFSIGNALED(st))
                fprintf(stderr, "%s: rank %d was killed by signal %d; stopping the other ranks\n", who, r,
                        WTERMSIG(st));
            else
                fprintf(stderr, "%s: rank %d failed (exit status %d); stopping the other ranks\n", who, r, c);
            for (int i = 0; i < started; i++)
                if (pid[i] > 0) kill(pid[i], SIGTERM);
            kill_at = now_s() + grace_s;
        }
    }
    free(pid);
    return code;
}

/* t_servers.h: what the unit tests that start real servers (redis-server, nats-server,
 * clickhouse-server) share: a free loopback port, whether a program is installed, sleeping,
 * and removing a temporary directory. Included by test_glimit.c, test_stream.c, test_chsink.c. */
#ifndef GH_TESTS_T_SERVERS_H
#define GH_TESTS_T_SERVERS_H

#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. */
static inline int t_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Whether prog is an executable on PATH or in /usr/sbin, /usr/bin, /sbin (Debian puts some
 * servers in sbin, which a non-login PATH may lack). */
static inline int t_have(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    static const char *extra = "/usr/sbin:/usr/bin:/sbin";
    for (int pass = 0; pass < 2; pass++, path = extra)
        while (path && *path) {
            size_t n = strcspn(path, ":");
            if (n > 0 && n < sizeof buf - 64) {
                snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
                if (access(buf, X_OK) == 0)
                    return 1;
            }
            path += n + (path[n] == ':');
        }
    return 0;
}

static inline void t_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static inline int t_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p) < 0 ? -1 : 0;
}

/* rm -rf dir */
static inline void t_rm_rf(const char *dir) { nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

#endif

/* srcbind.c: an LD_PRELOAD shim for bench/protect.sh that gives the TCP connections of a tool that
 * cannot choose its source address (slowhttptest) one of a few loopback source addresses.
 *
 *   GH_SRCBIND="127.4.0.1 127.4.0.2" LD_PRELOAD=./srcbind.so slowhttptest ...
 *
 * Every connect() of an unbound IPv4 stream socket to a 127/8 destination first binds the socket
 * to the next address of GH_SRCBIND (round robin; port chosen at connect, IP_BIND_ADDRESS_NO_PORT).
 * Other sockets and destinations are left alone; a failed bind leaves the socket as it was. So the
 * proxy sees the attack from its own addresses, apart from the legitimate clients' and 127.0.0.1.
 *
 * Build: cc -O2 -shared -fPIC -o srcbind.so srcbind.c -ldl */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_ADDRS 64

static struct in_addr addrs[MAX_ADDRS];
static int naddrs = -1;
static unsigned next_addr;
static int (*real_connect)(int, const struct sockaddr *, socklen_t);

static void load(void)
{
    naddrs = 0;
    const char *env = getenv("GH_SRCBIND");
    if (!env)
        return;
    char buf[1024];
    strncpy(buf, env, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, " ,", &save); t && naddrs < MAX_ADDRS; t = strtok_r(NULL, " ,", &save))
        if (inet_pton(AF_INET, t, &addrs[naddrs]) == 1)
            naddrs++;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (!real_connect)
        real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (naddrs < 0)
        load();
    if (naddrs > 0 && sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        int type = 0;
        socklen_t tl = sizeof type;
        struct sockaddr_in cur;
        socklen_t cl = sizeof cur;
        if ((ntohl(in->sin_addr.s_addr) >> 24) == 127 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
            type == SOCK_STREAM && getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && cur.sin_family == AF_INET &&
            cur.sin_port == 0 && cur.sin_addr.s_addr == htonl(INADDR_ANY)) {
            struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr = addrs[next_addr++ % (unsigned)naddrs]};
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            (void)bind(fd, (struct sockaddr *)&src, sizeof src);
        }
    }
    return real_connect(fd, sa, len);
}

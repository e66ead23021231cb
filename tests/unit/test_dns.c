/* Unit tests for DNS discovery (src/proxy/dns.c) against a real DNS server: dnsmasq
 * on an ephemeral 127.0.0.1 port, answering from a hosts file the test rewrites
 * (SIGHUP makes dnsmasq re-read it) and for raw.test from --dns-rr records that repeat
 * an address. The tests run in order and share the server; every wait is bounded by
 * a deadline. A missing dnsmasq fails the test. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/common.h"
#include "core/loop.h"
#include "proxy/dns.h"
#include "t.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

extern char **environ;

static char dir[64], hosts_path[96], log_path[96];
static pid_t dnsmasq_pid = -1;
static int port;
static int changefd = -1; /* eventfd counting on_change calls */
static char err[256];

static void on_change(void *arg)
{
    uint64_t one = 1;
    ssize_t w = write(*(int *)arg, &one, sizeof one);
    (void)w;
}

static void nap(int ms) { poll(NULL, 0, ms); }

static void write_hosts(const char *text)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", hosts_path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || chmod(tmp, 0644) < 0 || rename(tmp, hosts_path) < 0) {
        fprintf(stderr, "cannot write %s: %s\n", hosts_path, strerror(errno));
        exit(1);
    }
}

/* A port that was free a moment ago (dnsmasq's bind may still lose a race: retried). */
static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
        perror("free_udp_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int tcp_connects(int p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void show_log(void)
{
    char buf[4096];
    int fd = open(log_path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (n > 0) {
        buf[n] = 0;
        fprintf(stderr, "--- dnsmasq log ---\n%s-------------------\n", buf);
    }
    if (fd >= 0)
        close(fd);
}

/* Start dnsmasq on a fresh port; 0 when it answers TCP connections (it binds UDP and
 * TCP together, so it is then ready). */
static int dnsmasq_start(int fixed_port)
{
    if (access(DNSMASQ, X_OK) != 0) {
        fprintf(stderr, "%s is missing (Debian package dnsmasq-base): cannot test DNS discovery\n", DNSMASQ);
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        port = fixed_port ? fixed_port : free_udp_port();
        char a_port[32], a_hosts[128];
        snprintf(a_port, sizeof a_port, "--port=%d", port);
        snprintf(a_hosts, sizeof a_hosts, "--addn-hosts=%s", hosts_path);
        char *argv[] = {DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                        "--pid-file=", "--bind-interfaces", "--listen-address=127.0.0.1", a_port, a_hosts,
                        "--local-ttl=1", "--local=/test/", /* authoritative for .test: NXDOMAIN, not REFUSED */
                        "--dns-rr=raw.test,1,0a000007", "--dns-rr=raw.test,1,0a000007",
                        "--dns-rr=raw.test,1,0a000006", "--log-facility=-", "--user=root", NULL};
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        int rc = posix_spawn(&dnsmasq_pid, DNSMASQ, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) {
            fprintf(stderr, "posix_spawn %s: %s\n", DNSMASQ, strerror(rc));
            return -1;
        }
        for (uint64_t end = gh_clock_ms() + 5000; gh_clock_ms() < end;) {
            int st;
            if (waitpid(dnsmasq_pid, &st, WNOHANG) == dnsmasq_pid) {
                dnsmasq_pid = -1;
                break; /* most likely the port was taken: try another */
            }
            if (tcp_connects(port))
                return 0;
            nap(5);
        }
        if (dnsmasq_pid > 0) {
            kill(dnsmasq_pid, SIGKILL);
            waitpid(dnsmasq_pid, NULL, 0);
            dnsmasq_pid = -1;
        }
    }
    fprintf(stderr, "dnsmasq did not start\n");
    show_log();
    return -1;
}

static void dnsmasq_stop(void)
{
    if (dnsmasq_pid <= 0)
        return;
    kill(dnsmasq_pid, SIGTERM);
    for (uint64_t end = gh_clock_ms() + 2000; gh_clock_ms() < end; nap(5))
        if (waitpid(dnsmasq_pid, NULL, WNOHANG) == dnsmasq_pid) {
            dnsmasq_pid = -1;
            return;
        }
    kill(dnsmasq_pid, SIGKILL);
    waitpid(dnsmasq_pid, NULL, 0);
    dnsmasq_pid = -1;
}

static gh_dns_conf_t conf_for(int p, uint32_t timeout_ms)
{
    static char ns[64];
    snprintf(ns, sizeof ns, "127.0.0.1:%d", p);
    return (gh_dns_conf_t){.nameservers = ns, .timeout_ms = timeout_ms, .min_ttl_ms = 100, .max_ttl_ms = 1000};
}

/* The addresses as "a,b,c" for comparisons. */
static const char *fmt(const gh_dns_addr_t *a, int n)
{
    static char out[1024];
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        char b[INET6_ADDRSTRLEN];
        const struct sockaddr *sa = (const struct sockaddr *)&a[i].addr;
        int bad = 0;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
            inet_ntop(AF_INET, &s4->sin_addr, b, sizeof b);
            bad = a[i].len != sizeof(*s4) || s4->sin_port != 0;
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
            inet_ntop(AF_INET6, &s6->sin6_addr, b, sizeof b);
            bad = a[i].len != sizeof(*s6) || s6->sin6_port != 0;
        }
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%s%s", i ? "," : "", b, bad ? "(BAD)" : "");
    }
    return out;
}

static gh_str_t view(const gh_dns_addr_t *a, int n)
{
    const char *s = n < 0 ? "ERR" : fmt(a, n);
    return gh_str(s, strlen(s));
}

static int lookup(const char *host, int family, uint64_t gen, gh_dns_addr_t *out, int max)
{
    err[0] = 0;
    return gh_dns_lookup(host, family, gen, out, max, err, sizeof err);
}

/* Lookup as a string view for CHECK_STR ("" for no address, "ERR" for an error). */
static gh_str_t lookup_str(const char *host, int family, uint64_t gen)
{
    gh_dns_addr_t a[GH_DNS_MAX_ADDRS];
    return view(a, lookup(host, family, gen, a, GH_DNS_MAX_ADDRS));
}

static gh_dns_stats_t stats(void)
{
    gh_dns_stats_t s;
    gh_dns_stats(&s);
    return s;
}

static const char hosts_v1[] = "10.0.0.10 multi.test\n"
                               "10.0.0.9 multi.test\n"
                               "fd00::1 multi.test\n"
                               "10.1.1.1 v4only.test\n";
static const char hosts_v2[] = "10.0.0.11 multi.test\n"
                               "fd00::2 multi.test\n"
                               "fd00::1 multi.test\n";

static void test_bad_config(void)
{
    static const char *const bad[] = {"",           "nonsense",      "127.0.0.1:abc", "127.0.0.1:99999",
                                      "127.0.0.1:", "127.0.0.1:0",   "1.2.3.4,,",     "host.example:53",
                                      "[::1",       "[::1]x",        "300.1.1.1",     "[127.0.0.1]:53"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        gh_dns_conf_t c = {.nameservers = bad[i]};
        err[0] = 0;
        int rc = gh_dns_configure(&c, err, sizeof err);
        if (rc != GH_EINVAL)
            fprintf(stderr, "nameservers \"%s\" accepted (%d)\n", bad[i], rc);
        CHECK_INT(rc, GH_EINVAL);
        CHECK(strstr(err, "nameservers") != NULL);
    }
    gh_dns_conf_t ttl = {.min_ttl_ms = 5000, .max_ttl_ms = 1000};
    CHECK_INT(gh_dns_configure(&ttl, err, sizeof err), GH_EINVAL);
    CHECK(strstr(err, "min_ttl") != NULL);
    /* well-formed lists, including spaces and a bare IPv6 address */
    gh_dns_conf_t ok = {.nameservers = " 127.0.0.1:5353, [::1]:53 ,::1,10.0.0.1"};
    CHECK_INT(gh_dns_configure(&ok, err, sizeof err), 0);
    gh_dns_conf_t sys = {.nameservers = NULL};
    CHECK_INT(gh_dns_configure(&sys, err, sizeof err), 0);
}

static void test_lookup_sorted_deduped(void)
{
    gh_dns_conf_t c = conf_for(port, 500);
    CHECK_INT(gh_dns_configure(&c, err, sizeof err), 0);
    gh_dns_addr_t a[GH_DNS_MAX_ADDRS];
    int n = lookup("multi.test", AF_UNSPEC, 1, a, GH_DNS_MAX_ADDRS);
    CHECK_INT(n, 3);
    CHECK_STR(view(a, n), "10.0.0.9,10.0.0.10,fd00::1");
    /* dnsmasq repeats 10.0.0.7 (two --dns-rr), and has no AAAA for raw.test (NXDOMAIN) */
    CHECK_STR(lookup_str("raw.test", AF_UNSPEC, 1), "10.0.0.6,10.0.0.7");
    CHECK_STR(lookup_str("raw.test", AF_INET, 1), "10.0.0.6,10.0.0.7");
    CHECK_STR(lookup_str("multi.test", AF_INET, 1), "10.0.0.9,10.0.0.10");
    CHECK_STR(lookup_str("multi.test", AF_INET6, 1), "fd00::1");
    /* at most max: the first of the sorted set */
    n = lookup("multi.test", AF_UNSPEC, 1, a, 1);
    CHECK_INT(n, 1);
    CHECK_STR(view(a, n), "10.0.0.9");
}

static void test_no_address_is_not_an_error(void)
{
    gh_dns_addr_t a[4];
    CHECK_INT(lookup("nope.test", AF_UNSPEC, 1, a, 4), 0);     /* NXDOMAIN */
    CHECK_INT(lookup("v4only.test", AF_INET6, 1, a, 4), 0);    /* NODATA */
    CHECK_INT(lookup("v4only.test", AF_UNSPEC, 1, a, 4), 1);   /* A answered, AAAA empty */
    CHECK_INT(lookup("10.1.2.3", AF_UNSPEC, 1, a, 4), 1);      /* literals need no DNS */
    CHECK_INT(lookup("::1", AF_INET, 1, a, 4), 0);
    CHECK_STR(lookup_str("::1", AF_UNSPEC, 1), "::1");
    CHECK_INT(lookup("", AF_UNSPEC, 1, a, 4), GH_EINVAL);
    CHECK_INT(lookup("x.test", 12345, 1, a, 4), GH_EINVAL);
}

static void test_cache_hit(void)
{
    gh_dns_stats_t s0 = stats();
    CHECK(s0.queries >= 10);
    CHECK_INT(s0.failures, 0);
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 1), "10.0.0.9,10.0.0.10,fd00::1");
    CHECK_STR(lookup_str("MULTI.test", AF_UNSPEC, 1), "10.0.0.9,10.0.0.10,fd00::1"); /* names are case-blind */
    CHECK_INT(lookup("nope.test", AF_UNSPEC, 1, (gh_dns_addr_t[1]){0}, 1), 0);
    gh_dns_stats_t s1 = stats();
    CHECK_INT(s1.queries, s0.queries);
    CHECK_INT(s1.names, s0.names);
    /* multi.test x 3 families, raw.test x 2, v4only.test x 2, nope.test (literals are not cached) */
    CHECK_INT(s1.names, 8);
    CHECK_INT(s1.queries, 12);
    /* the same settings again: a no-op that keeps the cache */
    gh_dns_conf_t c = conf_for(port, 500);
    CHECK_INT(gh_dns_configure(&c, err, sizeof err), 0);
    CHECK_INT(stats().names, 8);
    /* a failed configure changes nothing either */
    gh_dns_conf_t bad = {.nameservers = "1.2.3.4:x"};
    CHECK_INT(gh_dns_configure(&bad, err, sizeof err), GH_EINVAL);
    CHECK_INT(stats().names, 8);
    CHECK_INT(stats().queries, s0.queries);
}

/* A server that never answers: the lookup ends by our deadline (timeout x tries). */
static void test_timeout_bound(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    gh_dns_conf_t c = conf_for(ntohs(a.sin_port), 100);
    CHECK_INT(gh_dns_configure(&c, err, sizeof err), 0);
    CHECK_INT(stats().names, 0); /* changed settings flushed the cache */
    uint64_t t0 = gh_clock_ms();
    gh_dns_addr_t out[4];
    CHECK_INT(lookup("multi.test", AF_UNSPEC, 1, out, 4), GH_ETIMEOUT);
    uint64_t took = gh_clock_ms() - t0;
    CHECK(took >= 190 && took < 1000);
    CHECK(strstr(err, "multi.test") != NULL);
    CHECK_INT(stats().failures, 1);
    /* remembered: asked again, it fails at once without a query (the refresher retries) */
    CHECK_INT(stats().names, 1);
    uint64_t q = stats().queries;
    t0 = gh_clock_ms();
    CHECK_INT(lookup("multi.test", AF_UNSPEC, 1, out, 4), GH_ETIMEOUT);
    CHECK(gh_clock_ms() - t0 < 50);
    CHECK(strstr(err, "background") != NULL);
    CHECK_INT(stats().queries, q);
    close(fd);
    c = conf_for(port, 500);
    CHECK_INT(gh_dns_configure(&c, err, sizeof err), 0);
}

static int wait_change(int ms)
{
    struct pollfd p = {.fd = changefd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return 0;
    uint64_t v;
    return read(changefd, &v, sizeof v) == sizeof v;
}

/* Wait until host resolves (from the cache) to want, up to ms. */
static int wait_for(const char *host, int family, const char *want, int ms)
{
    for (uint64_t end = gh_clock_ms() + (uint64_t)ms;; nap(10)) {
        gh_str_t got = lookup_str(host, family, 1);
        if (got.n == strlen(want) && !memcmp(got.p, want, got.n))
            return 1;
        if (gh_clock_ms() >= end) {
            fprintf(stderr, "%s: still \"%.*s\", waited for \"%s\"\n", host, (int)got.n, got.p, want);
            return 0;
        }
    }
}

static void test_refresh_follows_changes(void)
{
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 1), "10.0.0.9,10.0.0.10,fd00::1");
    CHECK_INT(lookup("v4only.test", AF_INET, 1, (gh_dns_addr_t[1]){0}, 1), 1);
    CHECK_INT(lookup("nope.test", AF_UNSPEC, 1, (gh_dns_addr_t[1]){0}, 1), 0);
    uint64_t q0 = stats().queries;
    CHECK_INT(gh_dns_start(on_change, &changefd), 0);
    CHECK_INT(gh_dns_start(on_change, &changefd), GH_EINVAL); /* one refresher */
    /* TTL 1 s: a round of refreshes (2 + 1 + 2 queries) finds nothing new: no callback */
    CHECK(!wait_change(1300));
    CHECK(stats().queries >= q0 + 5);
    CHECK_INT(stats().changes, 0);
    q0 = stats().queries;

    /* multi.test changes, v4only.test disappears, nope.test appears */
    char text[256];
    snprintf(text, sizeof text, "%s10.2.2.2 nope.test\n", hosts_v2);
    write_hosts(text);
    CHECK(kill(dnsmasq_pid, SIGHUP) == 0);
    CHECK(wait_change(5000));
    CHECK(wait_for("multi.test", AF_UNSPEC, "10.0.0.11,fd00::1,fd00::2", 5000));
    CHECK(wait_for("v4only.test", AF_INET, "", 5000));
    CHECK(wait_for("nope.test", AF_UNSPEC, "10.2.2.2", 5000));
    /* 3, or 4 if the reload fell between the A and the AAAA answer of multi.test */
    CHECK(stats().changes >= 3 && stats().changes <= 4);
    CHECK_INT(stats().failures, 1); /* the one of test_timeout_bound */
    CHECK(stats().queries > q0);
}

static int udp_bind(int p)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/* Answer one query on fd with SERVFAIL; its name and type go to name/qtype. 0, or
 * -1 when nothing came within ms. */
static int servfail_one(int fd, int ms, char *name, size_t namelen, int *qtype)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) != 1)
        return -1;
    unsigned char q[512];
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
    if (n < 17)
        return -1;
    size_t i = 12, o = 0;
    while (i < (size_t)n && q[i] && q[i] < 64 && i + q[i] + 1 < (size_t)n) {
        o += (size_t)snprintf(name + o, o < namelen ? namelen - o : 0, "%s%.*s", o ? "." : "", q[i],
                              (const char *)q + i + 1);
        i += q[i] + 1u;
    }
    *qtype = i + 2 < (size_t)n ? q[i + 1] << 8 | q[i + 2] : -1;
    q[2] |= 0x80;                            /* a response */
    q[3] = (unsigned char)((q[3] & 0xf0) | 2); /* SERVFAIL */
    sendto(fd, q, (size_t)n, 0, (struct sockaddr *)&from, fl);
    return 0;
}

/* The server goes away: refreshes fail (refused, then SERVFAIL), the last known
 * set is kept and no change is reported. */
static void test_server_gone(void)
{
    uint64_t changes = stats().changes;
    dnsmasq_stop();
    uint64_t f0 = stats().failures;
    for (uint64_t end = gh_clock_ms() + 3000; stats().failures == f0 && gh_clock_ms() < end;)
        nap(10);
    CHECK(stats().failures > f0);
    /* a new name fails at once (connection refused), it does not hang */
    uint64_t t0 = gh_clock_ms();
    gh_dns_addr_t a[2];
    CHECK_INT(lookup("other.test", AF_INET, 1, a, 2), GH_EIO);
    CHECK(gh_clock_ms() - t0 < 500);
    CHECK(strstr(err, "other.test") != NULL);
    uint64_t q = stats().queries;
    CHECK_INT(lookup("other.test", AF_INET, 1, a, 2), GH_EIO); /* remembered */
    CHECK_INT(stats().queries, q);

    /* now a server that answers SERVFAIL to everything. c-ares asks twice (tries) per
     * refresh, and a name's next refresh starts only when the last one ended: a third
     * A query for multi.test means a refresh of it has failed */
    int fd = udp_bind(port);
    CHECK(fd >= 0);
    int multi_a = 0;
    for (uint64_t end = gh_clock_ms() + 5000; fd >= 0 && multi_a < 3 && gh_clock_ms() < end;) {
        char name[256] = "";
        int qtype;
        if (servfail_one(fd, 100, name, sizeof name, &qtype) == 0 && !strcmp(name, "multi.test") && qtype == 1)
            multi_a++;
    }
    CHECK_INT(multi_a, 3);
    if (fd >= 0)
        close(fd);
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 1), "10.0.0.11,fd00::1,fd00::2");
    CHECK_STR(lookup_str("nope.test", AF_UNSPEC, 1), "10.2.2.2");
    CHECK_INT(stats().changes, changes);
}

/* The server is back (same port): the name that failed resolves in the background,
 * and that is a change. */
static void test_server_back(void)
{
    char text[256];
    snprintf(text, sizeof text, "%s10.2.2.2 nope.test\n10.3.3.3 other.test\n", hosts_v2);
    write_hosts(text);
    while (wait_change(0))
        ; /* forget earlier calls */
    uint64_t changes = stats().changes;
    CHECK_INT(dnsmasq_start(port), 0);
    CHECK(wait_change(5000));
    CHECK(wait_for("other.test", AF_INET, "10.3.3.3", 5000));
    CHECK(stats().changes > changes);
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 1), "10.0.0.11,fd00::1,fd00::2");
}

static void test_prune(void)
{
    CHECK_INT(stats().names, 4); /* multi, v4only, nope, other */
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 2), "10.0.0.11,fd00::1,fd00::2");
    gh_dns_prune(2);
    CHECK_INT(stats().names, 1);
    gh_dns_prune(2);
    CHECK_INT(stats().names, 1);
    /* pruned: asked again (A and AAAA) */
    uint64_t q = stats().queries;
    CHECK_STR(lookup_str("nope.test", AF_UNSPEC, 2), "10.2.2.2");
    CHECK(stats().queries >= q + 2);
    CHECK_INT(stats().names, 2);
    gh_dns_prune(3);
    CHECK_INT(stats().names, 0);
    CHECK_STR(lookup_str("multi.test", AF_UNSPEC, 3), "10.0.0.11,fd00::1,fd00::2");
}

static int etc_hosts_has_localhost(void)
{
    char line[512];
    int found = 0;
    FILE *f = fopen("/etc/hosts", "r");
    while (f && !found && fgets(line, sizeof line, f)) {
        char *tok = strtok(line, " \t\n");
        if (!tok || strcmp(tok, "127.0.0.1"))
            continue;
        while (!found && (tok = strtok(NULL, " \t\n")) && *tok != '#')
            found = !strcmp(tok, "localhost");
    }
    if (f)
        fclose(f);
    return found;
}

/* Stop with a refresh in flight to a server that never answers: prompt, and clean
 * (ASan's leak check runs at exit). */
static void test_stop_is_prompt(void)
{
    dnsmasq_stop();
    int fd = udp_bind(port);
    CHECK(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, 3000) == 1); /* a refresh query arrived and waits for its answer */
    uint64_t t0 = gh_clock_ms();
    gh_dns_stop();
    uint64_t took = gh_clock_ms() - t0;
    if (took >= 100)
        fprintf(stderr, "gh_dns_stop took %llu ms\n", (unsigned long long)took);
    CHECK(took < 100);
    CHECK_INT(stats().names, 0);
    close(fd);
    /* usable again after a stop, on the system's settings: /etc/hosts comes first
     * (only tried when it names localhost, so that nothing leaves the machine) */
    CHECK_STR(lookup_str("127.0.0.1", AF_INET, 1), "127.0.0.1");
    if (etc_hosts_has_localhost()) {
        CHECK_STR(lookup_str("localhost", AF_INET, 1), "127.0.0.1");
        CHECK_INT(stats().names, 1);
    }
    gh_dns_stop();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "/tmp/gh-test-dns-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(hosts_path, sizeof hosts_path, "%s/hosts", dir);
    snprintf(log_path, sizeof log_path, "%s/dnsmasq.log", dir);
    write_hosts(hosts_v1);
    changefd = eventfd(0, EFD_CLOEXEC);
    int up = dnsmasq_start(0) == 0;
    RUN(test_bad_config);
    if (!up) {
        t_fail++;
        fprintf(stderr, "FAIL dnsmasq_start\n");
    } else {
        RUN(test_lookup_sorted_deduped);
        RUN(test_no_address_is_not_an_error);
        RUN(test_cache_hit);
        RUN(test_timeout_bound);
        RUN(test_refresh_follows_changes);
        RUN(test_server_gone);
        RUN(test_server_back);
        RUN(test_prune);
        RUN(test_stop_is_prompt);
    }
    gh_dns_stop();
    dnsmasq_stop();
    if (t_fail)
        show_log();
    char path[128];
    snprintf(path, sizeof path, "%s/hosts", dir);
    unlink(path);
    unlink(log_path);
    rmdir(dir);
    close(changefd);
    return t_done("dns");
}

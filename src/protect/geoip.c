/* geoip.c: see geoip.h.
 *
 * MMDB_get_value walks the record's maps by key without allocating (unlike
 * MMDB_get_entry_data_list), which keeps lookups allocation-free. Mapped IPv6
 * addresses are rewritten to sockaddr_in on the stack: MaxMind's own databases alias
 * ::ffff:0:0/96 to the IPv4 subtree, but not every writer does. */
#include "protect/geoip.h"

#include <errno.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>

struct gh_geoip {
    MMDB_s db;
};

gh_geoip_t *gh_geoip_open(const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!path) {
        if (err && errlen)
            snprintf(err, errlen, "(null): no path");
        return NULL;
    }
    gh_geoip_t *g = calloc(1, sizeof(*g));
    if (!g) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, gh_err_msg(GH_ENOMEM));
        return NULL;
    }
    errno = 0;
    int rc = MMDB_open(path, MMDB_MODE_MMAP, &g->db), en = errno;
    if (rc != MMDB_SUCCESS) {
        if (err && errlen) {
            if ((rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) && en)
                snprintf(err, errlen, "%s: %s: %s", path, MMDB_strerror(rc), strerror(en));
            else
                snprintf(err, errlen, "%s: %s", path, MMDB_strerror(rc));
        }
        free(g); /* MMDB_open releases what it took on failure */
        return NULL;
    }
    return g;
}

void gh_geoip_close(gh_geoip_t *g)
{
    if (!g)
        return;
    MMDB_close(&g->db);
    free(g);
}

/* 1 with cc filled when the entry at the path is a two-letter string. */
static int iso_code(MMDB_entry_s *entry, const char *top, char cc[3])
{
    MMDB_entry_data_s d;
    if (MMDB_get_value(entry, &d, top, "iso_code", NULL) != MMDB_SUCCESS)
        return 0;
    if (!d.has_data || d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size != 2)
        return 0;
    for (int i = 0; i < 2; i++) {
        char c = d.utf8_string[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return 0;
        cc[i] = c;
    }
    cc[2] = '\0';
    return 1;
}

int gh_geoip_country(const gh_geoip_t *g, const struct sockaddr *sa, char cc[3])
{
    if (!cc)
        return GH_EINVAL;
    cc[0] = '\0';
    if (!g || !sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return GH_EINVAL;
    struct sockaddr_in v4;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memset(&v4, 0, sizeof v4);
            v4.sin_family = AF_INET;
            memcpy(&v4.sin_addr, s6->sin6_addr.s6_addr + 12, 4);
            sa = (const struct sockaddr *)&v4;
        }
    }
    int mmerr = MMDB_SUCCESS;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(&g->db, sa, &mmerr);
    if (mmerr == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR)
        return 0;
    if (mmerr != MMDB_SUCCESS)
        return GH_EIO;
    if (!r.found_entry)
        return 0;
    if (iso_code(&r.entry, "country", cc) || iso_code(&r.entry, "registered_country", cc))
        return 1;
    cc[0] = '\0';
    return 0;
}

int gh_geoip_country_ip(const gh_geoip_t *g, int family, const uint8_t *addr, char cc[3])
{
    if (!addr) {
        if (cc)
            cc[0] = '\0';
        return GH_EINVAL;
    }
    if (family == AF_INET) {
        struct sockaddr_in s4;
        memset(&s4, 0, sizeof s4);
        s4.sin_family = AF_INET;
        memcpy(&s4.sin_addr, addr, 4);
        return gh_geoip_country(g, (const struct sockaddr *)&s4, cc);
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 s6;
        memset(&s6, 0, sizeof s6);
        s6.sin6_family = AF_INET6;
        memcpy(&s6.sin6_addr, addr, 16);
        return gh_geoip_country(g, (const struct sockaddr *)&s6, cc);
    }
    if (cc)
        cc[0] = '\0';
    return GH_EINVAL;
}

void gh_geoip_info(const gh_geoip_t *g, const char **type, uint64_t *build_epoch)
{
    if (type)
        *type = g ? g->db.metadata.database_type : NULL;
    if (build_epoch)
        *build_epoch = g ? g->db.metadata.build_epoch : 0;
}

/* edits.h: what the programmable edge changes in one request.
 *
 * Request rules (rules.h) and edge functions (src/edge/lua.h) both write their
 * effects here; the session applies them: a new method, path or query for the
 * request sent upstream, header edits on the request and on the response, an
 * upstream chosen by name, or a direct answer (redirect or response) made at the
 * edge. One gh_edits_t per request that has any, made on first use and freed with
 * the request. Strings given to it are copied into its own memory (chunks that
 * never move, so views handed out stay valid until gh_edits_free).
 *
 * Called by src/rules, src/edge and src/proxy/session.c. Calls libc only. */
#ifndef GH_RULES_EDITS_H
#define GH_RULES_EDITS_H

#include "core/common.h"

enum { GH_HE_SET = 1, GH_HE_APPEND, GH_HE_REMOVE };

typedef struct {
    uint8_t op;   /* GH_HE_* */
    uint8_t resp; /* 0: the request sent upstream; 1: the response sent to the client */
    gh_str_t name, value; /* value empty for GH_HE_REMOVE */
} gh_hedit_t;

#define GH_EDITS_MAX_HEADERS 256 /* header edits per request, at most (more: GH_ELIMIT) */
#define GH_EDITS_MAX_BYTES (1u << 20) /* bytes of strings per request, at most */

typedef struct gh_edits_chunk {
    struct gh_edits_chunk *next;
    size_t used, cap;
    char data[];
} gh_edits_chunk_t;

typedef struct gh_edits {
    gh_str_t method, path, query; /* replacements sent upstream; .p NULL: unchanged */
    gh_hedit_t *h;                /* header edits, in the order made */
    uint32_t nh, caph;
    /* a direct answer (status != 0): a redirect (location set) or a response */
    int status;
    gh_str_t location, body, ctype;
    const void *upstream; /* gh_conf_upstream_t chosen by a rule or function, or NULL */
    gh_edits_chunk_t *mem;
    size_t bytes;
} gh_edits_t;

gh_edits_t *gh_edits_new(void);
void gh_edits_free(gh_edits_t *e);
/* Copy n bytes into e's memory (NUL-terminated there): NULL when over GH_EDITS_MAX_BYTES or OOM. */
char *gh_edits_dup(gh_edits_t *e, const char *p, size_t n);
/* Whether gatehouse itself manages this field (framing and connection fields: Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Proxy-Connection): no edit may. */
int gh_edits_managed(gh_str_t name);
/* Record a header edit (name and value copied). GH_EINVAL for a managed field, GH_ELIMIT past
 * GH_EDITS_MAX_HEADERS, GH_ENOMEM. */
int gh_edits_header(gh_edits_t *e, int resp, int op, gh_str_t name, gh_str_t value);
/* Set method / path / query (copied). */
int gh_edits_set(gh_edits_t *e, gh_str_t *field, gh_str_t v);
/* The value a request header has after the edits so far: *out set and 1 when edited (found = the
 * edit's value, or GH_STR_NULL when removed), 0 when no edit names it (read the request). */
int gh_edits_req_header(const gh_edits_t *e, gh_str_t name, gh_str_t *out);
/* Whether some edit of the request (resp 0) or response (resp 1) removes or sets this name, so that
 * the original field is dropped when the head is written. */
int gh_edits_drops(const gh_edits_t *e, int resp, gh_str_t name);

#endif

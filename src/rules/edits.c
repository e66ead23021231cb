/* edits.c: one request's changes from rules and edge functions (see edits.h). */
#include "rules/edits.h"

#include <stdlib.h>

gh_edits_t *gh_edits_new(void) { return calloc(1, sizeof(gh_edits_t)); }

void gh_edits_free(gh_edits_t *e)
{
    if (!e)
        return;
    for (gh_edits_chunk_t *c = e->mem, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(e->h);
    free(e);
}

char *gh_edits_dup(gh_edits_t *e, const char *p, size_t n)
{
    if (n > GH_EDITS_MAX_BYTES || e->bytes + n + 1 > GH_EDITS_MAX_BYTES)
        return NULL;
    gh_edits_chunk_t *c = e->mem;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > 2048 ? n + 1 : 2048;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = e->mem;
        e->mem = c;
    }
    char *d = c->data + c->used;
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    c->used += n + 1;
    e->bytes += n + 1;
    return d;
}

int gh_edits_set(gh_edits_t *e, gh_str_t *field, gh_str_t v)
{
    char *d = gh_edits_dup(e, v.p ? v.p : "", v.n);
    if (!d)
        return GH_ENOMEM;
    *field = gh_str(d, v.n);
    return 0;
}

int gh_edits_managed(gh_str_t name)
{
    static const char *const managed[] = {"content-length", "transfer-encoding", "connection", "keep-alive",
                                          "upgrade", "te", "trailer", "proxy-connection"};
    for (size_t i = 0; i < sizeof managed / sizeof managed[0]; i++)
        if (gh_str_caseeq_lit(name, managed[i]))
            return 1;
    return 0;
}

int gh_edits_header(gh_edits_t *e, int resp, int op, gh_str_t name, gh_str_t value)
{
    if (gh_edits_managed(name))
        return GH_EINVAL;
    if (e->nh >= GH_EDITS_MAX_HEADERS)
        return GH_ELIMIT;
    if (e->nh == e->caph) {
        uint32_t cap = e->caph ? e->caph * 2 : 8;
        gh_hedit_t *h = realloc(e->h, cap * sizeof *h);
        if (!h)
            return GH_ENOMEM;
        e->h = h;
        e->caph = cap;
    }
    char *n = gh_edits_dup(e, name.p, name.n);
    char *v = op == GH_HE_REMOVE ? NULL : gh_edits_dup(e, value.p ? value.p : "", value.n);
    if (!n || (op != GH_HE_REMOVE && !v))
        return GH_ENOMEM;
    e->h[e->nh++] = (gh_hedit_t){(uint8_t)op, (uint8_t)(resp != 0), gh_str(n, name.n),
                                 v ? gh_str(v, value.n) : GH_STR("")};
    return 0;
}

int gh_edits_req_header(const gh_edits_t *e, gh_str_t name, gh_str_t *out)
{
    for (uint32_t i = e->nh; i-- > 0;) {
        const gh_hedit_t *h = &e->h[i];
        if (h->resp || !gh_str_caseeq(h->name, name))
            continue;
        *out = h->op == GH_HE_REMOVE ? GH_STR_NULL : h->value;
        return 1;
    }
    return 0;
}

int gh_edits_drops(const gh_edits_t *e, int resp, gh_str_t name)
{
    for (uint32_t i = 0; i < e->nh; i++)
        if (e->h[i].resp == (resp != 0) && e->h[i].op != GH_HE_APPEND && gh_str_caseeq(e->h[i].name, name))
            return 1;
    return 0;
}

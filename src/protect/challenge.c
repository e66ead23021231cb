/* challenge.c: see challenge.h.
 *
 * MAC input (token):  "gatehouse-chal-v1" 0x00 "v1.<issued>.<difficulty>.<nonce>" 0x00
 *                     binding UA-bytes
 * MAC input (cookie): "gatehouse-pass-v1" 0x00 "v1.<expires>" 0x00 binding UA-bytes
 * binding: 0x04 + 3 bytes (/24), 0x06 + 8 bytes (/64), or 0x00. The text holds no NUL
 * and the tag fixes the binding's length, so the User-Agent, last, needs no length.
 *
 * The page's script searches n = 0, 1, 2, ... in order with the pure-JS SHA-256 below,
 * which hashes the constant prefix's full 64-byte blocks once and then only the tail per
 * n (one or two compressions per try), yielding to the event loop every 4096 tries so the
 * page stays responsive. Where crypto.subtle exists (secure contexts) it checks the JS
 * hash of the first candidate, and if they ever disagree the search runs on
 * crypto.subtle.digest instead, in batches of 256. Why not crypto.subtle throughout: one
 * promise per digest of a 90-byte input costs far more than the hash (node 20 here: ~20
 * us per digest in batches of 256, against ~1.4 us per try in JS, so difficulty 16 took
 * 872 ms against 64 ms). Every path finds the smallest n, as does any sequential solver:
 * tests compare them. */
#include "protect/challenge.h"

#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define NONCE_BYTES 12
#define NONCE_B64 16 /* base64url length of 12 bytes */
#define MAC_BYTES 32
#define MAC_B64 43 /* base64url length of 32 bytes, unpadded */
#define N_DIGITS_MAX 16
#define RETURN_MAX 2048

static const char LABEL_CHAL[] = "gatehouse-chal-v1";
static const char LABEL_PASS[] = "gatehouse-pass-v1";

/* ---- OpenSSL handles, fetched once ---------------------------------------------- */

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg;
static EVP_MD *sha256_alg;

static void fetch_algs(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    sha256_alg = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int algs_ready(void)
{
    pthread_once(&fetch_once, fetch_algs);
    return hmac_alg && sha256_alg;
}

/* ---- encoding ------------------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of n bytes into out (4n/3 rounded up characters). */
static size_t b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[v >> 18], out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63], out[o++] = b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64url[v >> 18], out[o++] = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url[v >> 18], out[o++] = b64url[(v >> 12) & 63];
        out[o++] = b64url[(v >> 6) & 63];
    }
    return o;
}

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Strict decimal: 1..maxd digits, no leading zero unless "0", fits uint64. Advances *i. */
static int parse_u64(gh_str_t s, size_t *i, size_t maxd, uint64_t *v)
{
    size_t st = *i;
    uint64_t x = 0;
    while (*i < s.n && is_digit(s.p[*i]) && *i - st < maxd) {
        unsigned d = (unsigned)(s.p[*i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return 0;
        x = x * 10 + d;
        (*i)++;
    }
    size_t len = *i - st;
    if (len == 0 || (len > 1 && s.p[st] == '0') || (*i < s.n && is_digit(s.p[*i])))
        return 0;
    *v = x;
    return 1;
}

static int expect(gh_str_t s, size_t *i, char c)
{
    if (*i >= s.n || s.p[*i] != c)
        return 0;
    (*i)++;
    return 1;
}

/* ---- binding and MAC ------------------------------------------------------------ */

/* The client's address prefix as tag + bytes; returns the length (1, 4 or 9). */
static size_t binding(const struct sockaddr *sa, uint8_t out[9])
{
    if (sa && sa->sa_family == AF_INET) {
        const uint8_t *a =
            (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        out[0] = 4;
        memcpy(out + 1, a, 3);
        return 4;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        const uint8_t *a = a6->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            out[0] = 4;
            memcpy(out + 1, a + 12, 3);
            return 4;
        }
        out[0] = 6;
        memcpy(out + 1, a, 8);
        return 9;
    }
    out[0] = 0;
    return 1;
}

/* mac_b64 = base64url(HMAC-SHA256(secret, label 0 text 0 binding ua)). */
static int mac_text(const uint8_t *secret, size_t secret_len, const char *label, const char *text,
                    size_t text_len, const struct sockaddr *peer, gh_str_t ua,
                    char mac_b64[MAC_B64])
{
    if (!algs_ready())
        return GH_EIO;
    uint8_t bind[9], md[MAC_BYTES];
    size_t bl = binding(peer, bind), mdl = 0;
    static const uint8_t zero = 0;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_alg);
    int ok = ctx && EVP_MAC_init(ctx, secret, secret_len, params) &&
             EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label) + 1) &&
             EVP_MAC_update(ctx, (const uint8_t *)text, text_len) &&
             EVP_MAC_update(ctx, &zero, 1) && EVP_MAC_update(ctx, bind, bl) &&
             (ua.n == 0 || EVP_MAC_update(ctx, (const uint8_t *)ua.p, ua.n)) &&
             EVP_MAC_final(ctx, md, &mdl, sizeof(md)) && mdl == MAC_BYTES;
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return GH_EIO;
    b64url_encode(md, MAC_BYTES, mac_b64);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

/* Constant-time check of the MAC text at mac (MAC_B64 characters). */
static int mac_ok(const uint8_t *secret, size_t secret_len, const char *label, gh_str_t text,
                  const struct sockaddr *peer, gh_str_t ua, const char *mac)
{
    char want[MAC_B64];
    if (mac_text(secret, secret_len, label, text.p, text.n, peer, ua, want) != 0)
        return 0;
    return CRYPTO_memcmp(want, mac, MAC_B64) == 0;
}

/* ---- token ---------------------------------------------------------------------- */

typedef struct {
    uint64_t issued;
    unsigned difficulty;
    size_t body_len; /* "v1.<issued>.<difficulty>.<nonce>": what the MAC covers */
    const char *mac;
} token_t;

static int token_parse(gh_str_t t, token_t *o)
{
    size_t i = 0;
    uint64_t d;
    if (!t.p || t.n > GH_CHAL_TOKEN_MAX - 1 || !expect(t, &i, 'v') || !expect(t, &i, '1') ||
        !expect(t, &i, '.') || !parse_u64(t, &i, 20, &o->issued) || !expect(t, &i, '.') ||
        !parse_u64(t, &i, 2, &d) || d > GH_CHAL_DIFFICULTY_MAX || !expect(t, &i, '.'))
        return 0;
    o->difficulty = (unsigned)d;
    for (size_t k = 0; k < NONCE_B64; k++, i++)
        if (i >= t.n || !is_b64url(t.p[i]))
            return 0;
    o->body_len = i;
    if (!expect(t, &i, '.') || t.n - i != MAC_B64)
        return 0;
    o->mac = t.p + i;
    for (; i < t.n; i++)
        if (!is_b64url(t.p[i]))
            return 0;
    return 1;
}

/* buf[0, len) is a signed text's fields ending in '.': appends the MAC of the fields under
 * label and copies the whole to out (NUL-terminated). Its length, GH_EIO or GH_ELIMIT. */
static int sign_out(const uint8_t *secret, size_t secret_len, const char *label, char *buf, size_t len,
                    const struct sockaddr *peer, gh_str_t ua, char *out, size_t cap)
{
    if (mac_text(secret, secret_len, label, buf, len - 1, peer, ua, buf + len) != 0)
        return GH_EIO;
    len += MAC_B64;
    if (len + 1 > cap)
        return GH_ELIMIT;
    memcpy(out, buf, len);
    out[len] = 0;
    return (int)len;
}

int gh_chal_token(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                  gh_str_t ua, uint64_t now_s, unsigned difficulty, char *out, size_t cap)
{
    if (!secret || secret_len < GH_CHAL_SECRET_MIN || difficulty > GH_CHAL_DIFFICULTY_MAX)
        return GH_EINVAL;
    uint8_t nonce[NONCE_BYTES];
    char buf[GH_CHAL_TOKEN_MAX];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return GH_EIO;
    int n = snprintf(buf, sizeof(buf), "v1.%llu.%u.", (unsigned long long)now_s, difficulty);
    size_t len = (size_t)n;
    len += b64url_encode(nonce, sizeof(nonce), buf + len);
    buf[len++] = '.';
    return sign_out(secret, secret_len, LABEL_CHAL, buf, len, peer, ua, out, cap);
}

unsigned gh_chal_pow_bits(gh_str_t token, gh_str_t n)
{
    if (!algs_ready() || token.n + n.n > 1024)
        return 0;
    uint8_t msg[1025], md[32];
    unsigned mdl = 0;
    if (token.n)
        memcpy(msg, token.p, token.n);
    msg[token.n] = '.';
    if (n.n)
        memcpy(msg + token.n + 1, n.p, n.n);
    if (!EVP_Digest(msg, token.n + 1 + n.n, md, &mdl, sha256_alg, NULL) || mdl != 32)
        return 0;
    unsigned bits = 0;
    for (int i = 0; i < 32; i++) {
        if (md[i] == 0) {
            bits += 8;
            continue;
        }
        bits += (unsigned)__builtin_clz(md[i]) - 24;
        break;
    }
    return bits;
}

int gh_chal_verify(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                   gh_str_t ua, gh_str_t token, gh_str_t n, uint64_t now_s, uint64_t max_age_s)
{
    token_t t;
    if (!secret || secret_len < GH_CHAL_SECRET_MIN || !token_parse(token, &t))
        return 0;
    if (!n.p || n.n == 0 || n.n > N_DIGITS_MAX)
        return 0;
    for (size_t i = 0; i < n.n; i++)
        if (!is_digit(n.p[i]))
            return 0;
    if ((t.issued > now_s && t.issued - now_s > GH_CHAL_SKEW_S) ||
        (now_s > t.issued && now_s - t.issued > max_age_s))
        return 0;
    if (!mac_ok(secret, secret_len, LABEL_CHAL, gh_str(token.p, t.body_len), peer, ua, t.mac))
        return 0;
    return gh_chal_pow_bits(token, n) >= t.difficulty;
}

/* ---- cookie --------------------------------------------------------------------- */

int gh_chal_cookie(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                   gh_str_t ua, uint64_t expires_s, char *out, size_t cap)
{
    if (!secret || secret_len < GH_CHAL_SECRET_MIN)
        return GH_EINVAL;
    char buf[GH_CHAL_COOKIE_MAX];
    size_t len = (size_t)snprintf(buf, sizeof(buf), "v1.%llu.", (unsigned long long)expires_s);
    return sign_out(secret, secret_len, LABEL_PASS, buf, len, peer, ua, out, cap);
}

int gh_chal_cookie_check(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                         gh_str_t ua, gh_str_t value, uint64_t now_s)
{
    size_t i = 0;
    uint64_t exp;
    if (!secret || secret_len < GH_CHAL_SECRET_MIN || !value.p || value.n > GH_CHAL_COOKIE_MAX ||
        !expect(value, &i, 'v') || !expect(value, &i, '1') || !expect(value, &i, '.') ||
        !parse_u64(value, &i, 20, &exp))
        return 0;
    size_t body = i;
    if (!expect(value, &i, '.') || value.n - i != MAC_B64 || now_s >= exp)
        return 0;
    for (size_t k = i; k < value.n; k++)
        if (!is_b64url(value.p[k]))
            return 0;
    return mac_ok(secret, secret_len, LABEL_PASS, gh_str(value.p, body), peer, ua, value.p + i);
}

/* ---- page ----------------------------------------------------------------------- */

int gh_chal_return_ok(gh_str_t p)
{
    if (!p.p || p.n == 0 || p.n > RETURN_MAX || p.p[0] != '/')
        return 0;
    if (p.n > 1 && (p.p[1] == '/' || p.p[1] == '\\'))
        return 0;
    for (size_t i = 0; i < p.n; i++) {
        unsigned char c = (unsigned char)p.p[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return 0;
    }
    return 1;
}

typedef struct {
    char *p;
    size_t n, cap;
    int over;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->over || n > o->cap - o->n) {
        o->over = 1;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void puts_lit(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* A JavaScript string body: a small URL-safe set as is, everything else \u00XX, so no
 * quote, backslash, '<' or line break can end the string or the script. */
static void put_js(out_t *o, gh_str_t s)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c && strchr("-._~/?=&%+:,;@!*$", c))) {
            put(o, (const char *)&c, 1);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, e, 6);
        }
    }
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    "<meta name=\"robots\" content=\"noindex,nofollow\"><title>Checking your browser</title>"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;"
    "padding:0 1em;color:#222;background:#fff}</style></head>\n<body><h1>Checking your "
    "browser</h1><p id=\"s\">This takes a moment and happens once.</p>\n<noscript><p>This "
    "site needs JavaScript to check that you are not an automated client. Please enable "
    "JavaScript for this site and reload the page.</p></noscript>\n<script>\n(function(){\n";

/* The script after the values T (token), D (difficulty), V (verify path), R (return_to). */
static const char page_js[] =
    "var W=window,P=T+'.',C=W.crypto&&W.crypto.subtle;\n"
    "var K=new Int32Array([0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,"
    "0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,"
    "0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,"
    "0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,"
    "0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,0x27b70a85,"
    "0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,"
    "0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,"
    "0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,"
    "0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,"
    "0xa4506ceb,0xbef9a3f7,0xc67178f2]);\n"
    "function say(m){var d=W.document,e=d&&d.getElementById('s');if(e)e.textContent=m;}\n"
    "function done(n){say('Redirecting\\u2026');W.location.replace(V+'?t='+encodeURIComponent(T)"
    "+'&n='+n+'&r='+encodeURIComponent(R));}\n"
    "function asc(s){var a=new Uint8Array(s.length);for(var "
    "i=0;i<s.length;i++)a[i]=s.charCodeAt(i);"
    "return a;}\n"
    /* leading zero bits of a digest as bytes / as 32-bit words */
    "function zb(b){var k=D,i=0;for(;k>=8;k-=8)if(b[i++])return 0;return k==0||!(b[i]>>(8-k));}\n"
    "function zw(h){var k=D,i=0;for(;k>=32;k-=32)if(h[i++])return 0;return "
    "k==0||!(h[i]>>>(32-k));}\n"
    /* SHA-256 compression of the 64 bytes of m at o into the state h */
    "var w=new Int32Array(64);\n"
    "function blk(h,m,o){var i,a,b,c,d,e,f,g,k,t,u;\n"
    "for(i=0;i<16;i++,o+=4)w[i]=m[o]<<24|m[o+1]<<16|m[o+2]<<8|m[o+3];\n"
    "for(i=16;i<64;i++){a=w[i-15];b=w[i-2];w[i]=((a>>>7|a<<25)^(a>>>18|a<<14)^a>>>3)"
    "+((b>>>17|b<<15)^(b>>>19|b<<13)^b>>>10)+w[i-16]+w[i-7]|0;}\n"
    "a=h[0];b=h[1];c=h[2];d=h[3];e=h[4];f=h[5];g=h[6];k=h[7];\n"
    "for(i=0;i<64;i++){t=k+((e>>>6|e<<26)^(e>>>11|e<<21)^(e>>>25|e<<7))+(e&f^~e&g)+K[i]+w[i]|0;"
    "u=((a>>>2|a<<30)^(a>>>13|a<<19)^(a>>>22|a<<10))+(a&b^a&c^b&c)|0;"
    "k=g;g=f;f=e;e=d+t|0;d=c;c=b;b=a;a=t+u|0;}\n"
    "h[0]=h[0]+a|0;h[1]=h[1]+b|0;h[2]=h[2]+c|0;h[3]=h[3]+d|0;h[4]=h[4]+e|0;h[5]=h[5]+f|0;"
    "h[6]=h[6]+g|0;h[7]=h[7]+k|0;}\n"
    /* the prefix's full blocks once (midstate), then the tail and padding per try */
    "var pb=asc(P),full=pb.length>>6,mid=new Int32Array([0x6a09e667,0xbb67ae85,0x3c6ef372,"
    "0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19]);\n"
    "for(var i=0;i<full;i++)blk(mid,pb,i*64);\n"
    "var rest=pb.subarray(full*64),buf=new Uint8Array(128),st=new Int32Array(8);\n"
    "function jsh(n){var s=''+n,r=rest.length,L=r+s.length,j,nb,bits=(pb.length+s.length)*8;\n"
    "buf.fill(0);buf.set(rest);for(j=0;j<s.length;j++)buf[r+j]=s.charCodeAt(j);\n"
    "buf[L]=128;nb=L+9>64?128:64;buf[nb-4]=bits>>>24;buf[nb-3]=bits>>>16;buf[nb-2]=bits>>>8;"
    "buf[nb-1]=bits;\n"
    "st.set(mid);blk(st,buf,0);if(nb>64)blk(st,buf,64);return st;}\n"
    "function slow(n){for(var e=n+4096;n<e;n++)if(zw(jsh(n)))return done(n);"
    "setTimeout(function(){slow(n);},0);}\n"
    "function fast(n){var ps=[],k;try{for(k=0;k<256;k++)ps.push(C.digest('SHA-256',asc(P+(n+k))));}"
    "catch(x){return slow(n);}\n"
    "Promise.all(ps).then(function(rs){for(var k=0;k<rs.length;k++)if(zb(new Uint8Array(rs[k])))"
    "return done(n+k);fast(n+256);},function(){slow(n);});}\n"
    /* crypto.subtle checks the JS hash once; the search runs in JS, many times faster
     * than one promise per digest, unless the check fails */
    "function start(){if(!(C&&C.digest))return slow(0);var b;\n"
    "try{b=C.digest('SHA-256',asc(P+'0'));}catch(x){return slow(0);}\n"
    "b.then(function(d){var u=new Uint8Array(d),h=jsh(0);for(var i=0;i<32;i++)"
    "if(u[i]!=(h[i>>2]>>>24-8*(i&3)&255))return fast(0);slow(0);},function(){slow(0);});}\n"
    "start();\n"
    "})();\n</script></body></html>\n";

int gh_chal_page(char *out, size_t cap, gh_str_t token, unsigned difficulty, gh_str_t return_to,
                 gh_str_t verify_path)
{
    token_t t;
    if (!token_parse(token, &t) || t.difficulty != difficulty)
        return GH_EINVAL;
    if (!gh_chal_return_ok(verify_path) || memchr(verify_path.p, '?', verify_path.n) ||
        memchr(verify_path.p, '#', verify_path.n))
        return GH_EINVAL;
    if (!gh_chal_return_ok(return_to))
        return_to = GH_STR("/");
    out_t o = {out, 0, cap, 0};
    char num[16];
    put(&o, page_head, sizeof(page_head) - 1);
    puts_lit(&o, "var T=\"");
    put_js(&o, token);
    int nl = snprintf(num, sizeof(num), "\",D=%u,V=\"", difficulty);
    put(&o, num, (size_t)nl);
    put_js(&o, verify_path);
    puts_lit(&o, "\",R=\"");
    put_js(&o, return_to);
    puts_lit(&o, "\";\n");
    put(&o, page_js, sizeof(page_js) - 1);
    if (o.over)
        return GH_ELIMIT;
    return (int)o.n;
}

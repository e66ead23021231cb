/* challenge.h: the JavaScript proof-of-work interstitial and the HMAC-signed pass cookie.
 *
 * A client the bot scorer (protect/bot.h) flags gets, instead of the page, a small
 * self-contained HTML page (gh_chal_page; status 403 or 429 is the caller's choice)
 * whose inline script finds a counter n such that SHA-256(token "." n) starts with
 * `difficulty` zero bits, then navigates to verify_path?t=<token>&n=<n>&r=<return_to>.
 * The search runs on a SHA-256 written in JavaScript (crypto.subtle is missing outside
 * secure contexts, and one promise per digest is ~15x slower where it exists); where
 * crypto.subtle exists it checks the JS hash once and takes over if they disagree.
 * The verify handler checks the answer (gh_chal_verify), sets the pass cookie
 * (gh_chal_cookie, "v1.<expires_s>.<mac>", name and attributes the caller's: Secure,
 * HttpOnly, SameSite=Lax, Path=/ recommended) and redirects to r once
 * gh_chal_return_ok(r) agrees. Later requests carry the cookie (gh_chal_cookie_check)
 * and skip the scorer.
 *
 * Both sides are stateless: the token "v1.<issued_s>.<difficulty>.<nonce>.<mac>" (nonce
 * 12 random bytes, mac HMAC-SHA256, both base64url without padding) and the cookie carry
 * their own MAC, keyed by the caller's secret (at least GH_CHAL_SECRET_MIN bytes; rotate
 * by checking against the new and then the old secret). Each MAC covers all the fields
 * and a client binding: the address prefix (/24 for IPv4, /64 for IPv6, IPv4-mapped IPv6
 * as IPv4; other families bind to nothing) and the exact User-Agent value (its bytes
 * enter the MAC, a hash of it in effect). Token and cookie use different MAC labels, so
 * one can never stand in for the other. MACs compare in constant time (CRYPTO_memcmp)
 * on their canonical base64url text, so each has exactly one valid spelling.
 *
 * Cost to an attacker: difficulty d means 2^d SHA-256 on average (geometric: 1 in 100
 * clients needs 4.6 times that). 16 bits = 65,536 hashes, measured here: ~0.1 s for
 * the page's script under node 20 (V8, ~0.7 M tries/s; a browser is similar, a slow
 * phone several times slower, the 99th percentile ~0.5 s), ~30 ms in Python hashlib,
 * ~15 ms in C with OpenSSL. Paid once per client prefix, User-Agent and cookie
 * lifetime. That is no economic wall for a native solver; what the challenge buys is
 * that a client must run JavaScript (or carry a solver written for this page), that each
 * pass costs work that cannot be done ahead (fresh nonce, max_age), and that a pass
 * cannot be shared across prefixes or User-Agents. Each added bit doubles the cost for
 * browsers too: raise it for clients scoring high, not for everyone. A replayed solved
 * token or cookie from the same /24 and User-Agent is accepted (NAT neighbours look
 * alike); rate limiting bounds that.
 *
 * Called by the protection phase (page, cookie check) and the verify route handler.
 * Calls OpenSSL libcrypto (HMAC-SHA256 through EVP_MAC, SHA-256, RAND_bytes).
 * Thread-safe: no state but OpenSSL's algorithm handles, fetched once (pthread_once).
 * Allocation: each MAC allocates and frees one OpenSSL context (EVP_MAC_CTX; a cookie
 * check costs ~1.2 us here); the page is written into the caller's buffer. */
#ifndef GH_PROTECT_CHALLENGE_H
#define GH_PROTECT_CHALLENGE_H

#include "core/common.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GH_CHAL_SECRET_MIN 32
#define GH_CHAL_DIFFICULTY_DEFAULT 16
#define GH_CHAL_DIFFICULTY_MAX 32
#define GH_CHAL_TOKEN_MAX 100  /* buffer for a token, NUL included */
#define GH_CHAL_COOKIE_MAX 72  /* buffer for a cookie value, NUL included */
/* Allowed skew of a token issued "in the future" (several gateways, one secret). */
#define GH_CHAL_SKEW_S 60
/* A buffer of this size always holds the page. */
#define GH_CHAL_PAGE_SIZE(return_to_len, verify_path_len) \
    (6144 + 6 * ((size_t)(return_to_len) + (size_t)(verify_path_len)))

/* Writes a fresh challenge token for this client and a NUL to out; returns its length,
 * GH_EINVAL (secret shorter than GH_CHAL_SECRET_MIN, difficulty above
 * GH_CHAL_DIFFICULTY_MAX), GH_ELIMIT (cap below the token's size) or GH_EIO (no
 * randomness or OpenSSL failure). peer: as accept() filled it (sockaddr_in or
 * sockaddr_in6); NULL binds to no address. */
int gh_chal_token(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                  gh_str_t ua, uint64_t now_s, unsigned difficulty, char *out, size_t cap);

/* Writes the challenge page (HTML, UTF-8, no external resources) for a token from
 * gh_chal_token; difficulty must be the token's. return_to is the path to come back to;
 * anything gh_chal_return_ok rejects becomes "/". verify_path: the verify route, which
 * gh_chal_return_ok must accept and which holds no '?' or '#'. Every value reaches the
 * script as an escaped JavaScript string. Returns the length (no NUL is written),
 * GH_EINVAL (token malformed or of another difficulty, bad verify_path) or GH_ELIMIT
 * (cap too small: GH_CHAL_PAGE_SIZE always suffices). */
int gh_chal_page(char *out, size_t cap, gh_str_t token, unsigned difficulty, gh_str_t return_to,
                 gh_str_t verify_path);

/* 1 when token was issued by this secret to this client (same prefix, same User-Agent)
 * at most max_age_s seconds before now_s (and at most GH_CHAL_SKEW_S after it), and n (1
 * to 16 decimal digits) solves it; 0 otherwise, for any input. */
int gh_chal_verify(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                   gh_str_t ua, gh_str_t token, gh_str_t n, uint64_t now_s, uint64_t max_age_s);

/* Writes the pass-cookie value "v1.<expires_s>.<mac>" bound to this client and a NUL;
 * returns its length, GH_EINVAL (short secret), GH_ELIMIT or GH_EIO. */
int gh_chal_cookie(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                   gh_str_t ua, uint64_t expires_s, char *out, size_t cap);

/* 1 when value is a cookie of this secret for this client that has not expired
 * (now_s < expires_s); 0 otherwise (forged, other prefix or User-Agent, expired,
 * malformed), for any input. */
int gh_chal_cookie_check(const uint8_t *secret, size_t secret_len, const struct sockaddr *peer,
                         gh_str_t ua, gh_str_t value, uint64_t now_s);

/* 1 when path is safe to redirect to on the same site: it starts with exactly one '/'
 * (not "//" nor "/\", which browsers read as another host), holds only printable ASCII
 * without '\' and is at most 2048 bytes; 0 otherwise. */
int gh_chal_return_ok(gh_str_t path);

/* Leading zero bits of SHA-256(token "." n): what the page computes (for tests and
 * tooling; 0 on any failure). */
unsigned gh_chal_pow_bits(gh_str_t token, gh_str_t n);

#endif

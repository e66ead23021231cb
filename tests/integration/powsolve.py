"""powsolve.py: the "JavaScript-capable client" of the integration tests for the
proof-of-work challenge (src/protect/challenge.c).

It reads the page gh_chal_page writes (the values the inline script starts from:
`var T="<token>",D=<difficulty>,V="<verify path>",R="<return_to>";`, strings escaped as
\\uXXXX), searches n = 0, 1, 2, ... for SHA-256(token + "." + n) with at least D leading
zero bits, exactly as the script does (so it finds the same, smallest n), and builds the
URL the script navigates to: V?t=<token>&n=<n>&r=<return_to>, encoded as JavaScript's
encodeURIComponent encodes.

    url = solve(page_html)              # "/.gatehouse/verify?t=v1.17...&n=52637&r=%2Fshop"
    info = parse(page_html)             # {"token", "difficulty", "verify_path", "return_to"}
    n = solve_token(token, difficulty)

Difficulty 16 takes about 0.1 s here (hashlib, the prefix hashed once and copied).
"""

import hashlib
import json
import re
from urllib.parse import quote

# The values line of the page's script (see page_js in src/protect/challenge.c).
_JS_STR = r'"((?:[^"\\]|\\.)*)"'
_VALUES = re.compile(r"var T=" + _JS_STR + r",D=(\d+),V=" + _JS_STR + r",R=" + _JS_STR + r";")

# encodeURIComponent leaves A-Z a-z 0-9 and - _ . ! ~ * ' ( ) as they are.
_URI_COMPONENT_SAFE = "-_.!~*'()"


def _js_string(body):
    # the page escapes with \uXXXX only, which JSON reads the same way
    return json.loads('"' + body + '"')


def parse(page_html):
    """The challenge values of a page (str or bytes); ValueError when it is not one."""
    if isinstance(page_html, (bytes, bytearray)):
        page_html = page_html.decode("utf-8")
    m = _VALUES.search(page_html)
    if not m:
        raise ValueError("not a gatehouse challenge page")
    return {
        "token": _js_string(m.group(1)),
        "difficulty": int(m.group(2)),
        "verify_path": _js_string(m.group(3)),
        "return_to": _js_string(m.group(4)),
    }


def leading_zero_bits(digest):
    bits = 0
    for b in digest:
        if b == 0:
            bits += 8
            continue
        return bits + 8 - b.bit_length()
    return bits


def solve_token(token, difficulty, limit=1 << 40):
    """The smallest n >= 0 with SHA-256(token "." n) starting with difficulty zero bits."""
    base = hashlib.sha256((token + ".").encode("ascii"))
    full, rem = divmod(difficulty, 8)
    mask = (0xFF << (8 - rem)) & 0xFF
    for n in range(limit):
        h = base.copy()
        h.update(str(n).encode("ascii"))
        d = h.digest()
        if d[:full] == bytes(full) and (rem == 0 or not d[full] & mask):
            return n
    raise RuntimeError("no solution below %d" % limit)


def verify_url(info, n):
    return "%s?t=%s&n=%d&r=%s" % (
        info["verify_path"],
        quote(info["token"], safe=_URI_COMPONENT_SAFE),
        n,
        quote(info["return_to"], safe=_URI_COMPONENT_SAFE),
    )


def solve(page_html):
    """The URL (path and query, same site) the page's script would navigate to."""
    info = parse(page_html)
    return verify_url(info, solve_token(info["token"], info["difficulty"]))


if __name__ == "__main__":
    import sys

    print(solve(sys.stdin.read()))

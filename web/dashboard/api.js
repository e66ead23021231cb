// The admin API, with the key from sessionStorage as a Bearer token (never in a URL).

const STORE = "gatehouse.dashboard.key";

export function getKey() {
  return sessionStorage.getItem(STORE);
}

export function setKey(key) {
  sessionStorage.setItem(STORE, key);
}

export function clearKey() {
  sessionStorage.removeItem(STORE);
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}${detail ? ": " + detail : ""}`);
    this.status = status;
    this.detail = detail;
  }
}

// GET path on the admin listener: JSON (or text with {text: true}). Throws ApiError on a non-2xx
// answer (status 0 when the listener did not answer at all).
export async function get(path, { text = false, key = getKey() } = {}) {
  // logged out (no key stored, not even an empty one): a refresh still running sends nothing more
  if (key === null) throw new ApiError(0, "logged out");
  let r;
  try {
    r = await fetch(path, {
      // no key (an empty one): a key-less admin listener on loopback takes the caller as the operator
      headers: key ? { Authorization: "Bearer " + key, Accept: text ? "text/plain" : "application/json" }
        : { Accept: text ? "text/plain" : "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
  } catch (e) {
    throw new ApiError(0, "the admin listener did not answer");
  }
  if (!r.ok) {
    let detail = r.statusText;
    try {
      const j = await r.json();
      detail = j.detail || j.title || detail;
    } catch (e) { /* not a problem document */ }
    throw new ApiError(r.status, detail);
  }
  return text ? r.text() : r.json();
}

// Every page of a paginated collection (items, next_cursor), at most `max` items.
export async function getAll(path, max = 1000, opts = {}) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(path + sep + "limit=100" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""), opts);
    items.push(...(page.items || []));
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

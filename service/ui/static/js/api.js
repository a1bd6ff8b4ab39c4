// The one way the pages talk to the service: same origin, the API key in the X-API-Key header.
//
// The key is typed once per tab and kept in this module's memory and in sessionStorage (which is
// per tab and cleared when the tab closes). It never goes into a URL, a cookie or localStorage, so
// it is not sent anywhere the page did not put it explicitly.

const KEY_SLOT = "faceverify.apiKey";
// The pages live under <service>/ui/, this module under <service>/ui/js/: the API is two levels up,
// which keeps working behind a reverse proxy that mounts the service under a prefix.
export const API_BASE = new URL("../../", import.meta.url);

let memoryKey = null;

export function getKey() {
  if (memoryKey === null) {
    memoryKey = sessionStorage.getItem(KEY_SLOT);
  }
  return memoryKey;
}

export function setKey(key) {
  memoryKey = key;
  sessionStorage.setItem(KEY_SLOT, key);
}

export function forgetKey() {
  memoryKey = null;
  sessionStorage.removeItem(KEY_SLOT);
}

/** A refusal from the service: HTTP status, the stable `reason` code and the human `detail`. */
export class ApiError extends Error {
  constructor(status, reason, detail, body, retryAfter) {
    super(typeof detail === "string" ? detail : reason);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/**
 * Call the service. `form` (FormData) or `json` (object) is the body; `query` an object of
 * parameters (empty values left out). Answers parsed JSON, or a Blob with `blob: true`.
 * Non-2xx answers throw ApiError with the service's reason code.
 */
export async function api(path, { method = "GET", form, json, query, blob = false, signal } = {}) {
  const url = new URL(path.replace(/^\//, ""), API_BASE);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  const headers = {};
  const key = getKey();
  if (key) {
    headers["X-API-Key"] = key;
  }
  let body;
  if (form) {
    body = form;
  } else if (json !== undefined) {
    body = JSON.stringify(json);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal, credentials: "omit", cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") {
      throw error;
    }
    throw new ApiError(0, "unreachable", "the service did not answer", null, null);
  }
  if (!response.ok) {
    let parsed = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw new ApiError(
      response.status,
      parsed?.reason ?? `http_${response.status}`,
      parsed?.detail ?? response.statusText,
      parsed,
      response.headers.get("Retry-After"),
    );
  }
  if (blob) {
    return response.blob();
  }
  if (response.status === 204) {
    return null;
  }
  return response.json();
}

/** The key's name and scopes (GET /keys/me); admin implies every scope. */
export async function whoAmI() {
  const me = await api("/keys/me");
  const scopes = new Set(me.scopes);
  return { name: me.name, scopes, allows: (scope) => scopes.has("admin") || scopes.has(scope) };
}

// The auth service's REST API, same origin as this page. Every call that needs the token
// takes it as an argument; where the token is kept is app.js's business.

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

/**
 * A 422's errors as `field: message`, once per field, never the input. A field that may be
 * a value or left out (`password` of a PATCH) is a union to the server, which reports
 * each branch (`password.constrained-str`, `password.none`): the "should be None" branch
 * says nothing to a person, and the field is named without the branch.
 */
function validationDetail(errors) {
  const useful = errors.filter((error) => error?.type !== "none_required");
  const seen = new Map();
  for (const error of useful.length ? useful : errors) {
    const field = (error?.loc ?? []).filter((part) => part !== "body")[0] ?? "";
    if (!seen.has(field)) seen.set(field, String(error?.msg ?? "invalid"));
  }
  return Array.from(seen, ([field, message]) => (field ? `${field}: ${message}` : message)).join("; ");
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body?.detail === "string") return body.detail;
    if (Array.isArray(body?.detail)) return validationDetail(body.detail);
    if (body?.detail !== undefined) return JSON.stringify(body.detail);
  } catch {
    // not JSON: fall through to the status text
  }
  return response.statusText || `HTTP ${response.status}`;
}

async function request(path, { token = null, method = "GET", json, form } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = new URLSearchParams(form);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, `auth service unreachable (${error.message})`);
  }
  if (!response.ok) {
    throw new ApiError(response.status, await detailOf(response), response.headers.get("Retry-After"));
  }
  return response.status === 204 ? null : response.json();
}

/** GET /console/config.json: `{relay_url, livekit}`, from the server's settings. */
export function consoleConfig() {
  return request("/console/config.json");
}

/** POST /auth/token with the OAuth2 password form; returns the token response. */
export function login(username, password) {
  return request("/auth/token", { method: "POST", form: { username, password } });
}

/** POST /auth/logout: the token stops working everywhere. */
export function logout(token) {
  return request("/auth/logout", { token, method: "POST" });
}

/** GET /auth/me: `{id, username, type, disabled, created_at}`. */
export function me(token) {
  return request("/auth/me", { token });
}

/** GET /livekit/token?room=<factory>: 503 when LiveKit is not configured. */
export function livekitToken(token, room) {
  return request(`/livekit/token?room=${encodeURIComponent(room)}`, { token });
}

/** GET /factories (admins, operators, viewers): `{items: [{username, disabled, created_at}], total}`. */
export function listFactories(token, { limit, offset }) {
  return request(`/factories?limit=${limit}&offset=${offset}`, { token });
}

/** GET /users (admins): `{items, total}`. */
export function listUsers(token, { limit, offset }) {
  return request(`/users?limit=${limit}&offset=${offset}`, { token });
}

/** POST /users (admins): `{username, password, type}` → the new user. */
export function createUser(token, user) {
  return request("/users", { token, method: "POST", json: user });
}

/** PATCH /users/{id} (admins): any of `password`, `type`, `disabled` → the user. */
export function updateUser(token, id, changes) {
  return request(`/users/${encodeURIComponent(id)}`, { token, method: "PATCH", json: changes });
}

/** DELETE /users/{id} (admins). */
export function deleteUser(token, id) {
  return request(`/users/${encodeURIComponent(id)}`, { token, method: "DELETE" });
}

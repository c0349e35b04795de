// The auth service's public REST API (SPEC section 2), same origin as this page.
// The token lives in memory only: it is passed in, never stored.

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body?.detail === "string") return body.detail;
    if (body?.detail !== undefined) return JSON.stringify(body.detail);
  } catch {
    // not JSON: fall through to the status text
  }
  return response.statusText || `HTTP ${response.status}`;
}

async function request(path, options) {
  let response;
  try {
    response = await fetch(path, { cache: "no-store", credentials: "omit", ...options });
  } catch (error) {
    throw new ApiError(0, `auth service unreachable: ${error.message}`);
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      await detailOf(response),
      response.headers.get("Retry-After"),
    );
  }
  return response.json();
}

/** POST /auth/token with the OAuth2 password form; returns the token response. */
export function login(username, password) {
  return request("/auth/token", {
    method: "POST",
    body: new URLSearchParams({ username, password }),
  });
}

/** POST /auth/logout: the token stops working everywhere. */
export async function logout(token) {
  await fetch("/auth/logout", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    credentials: "omit",
  });
}

/** GET /livekit/token?room=<factory>: 503 when LiveKit is not configured. */
export function livekitToken(token, room) {
  return request(`/livekit/token?room=${encodeURIComponent(room)}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
}

// Extending a session before its token runs out: a dialog asks the person to confirm their
// password a few minutes before the token's `exp`, logs in again, and hands the fresh token
// to app.js, which sends it on the live relay session (op 7) and stores it. Ignored, the
// dialog lets the session end at `exp`: the relay closes with 4004 "token expired".

/** Ask this long before `exp` at most… */
export const RENEW_LEAD_SECONDS = 5 * 60;
/** …or this share of the token's life when that is shorter (short-lived tokens, tests). */
export const RENEW_LEAD_FRACTION = 0.25;
/** After `exp`, how long the relay has to say so (4004) before the console ends the session itself. */
export const EXPIRY_GRACE_SECONDS = 2;
/** With no REFRESHED this long after op 7 (the relay deferred it), send op 7 again. */
export const REFRESH_RETRY_SECONDS = 5;
/** setTimeout's largest delay (about 24.8 days); longer waits are chained. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;
const CLOCK_OFFSET_KEY = "factory-relay.clock-offset";

/** A JWT's payload (the middle part, base64url JSON), or null. No signature check: the servers do that. */
export function tokenClaims(token) {
  const part = typeof token === "string" ? token.split(".")[1] : undefined;
  if (!part) return null;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/** `{iat, exp}` in seconds since the epoch, or null if the token carries no usable `exp`. */
export function tokenTimes(token) {
  const claims = tokenClaims(token);
  const exp = Number(claims?.exp);
  if (!Number.isFinite(exp)) return null;
  const iat = Number(claims?.iat);
  return { exp, iat: Number.isFinite(iat) && iat < exp ? iat : exp - RENEW_LEAD_SECONDS / RENEW_LEAD_FRACTION };
}

/** When to ask (seconds since the epoch): a few minutes before `exp`, a quarter of the life for short tokens. */
export function askAt({ iat, exp }) {
  return exp - Math.min(RENEW_LEAD_SECONDS, (exp - iat) * RENEW_LEAD_FRACTION);
}

/** `4 min 05 s`, `12 s`: what is left, for the countdown. */
export function countdown(seconds) {
  const left = Math.max(0, Math.ceil(seconds));
  if (left < 60) return `${left} s`;
  return `${Math.floor(left / 60)} min ${String(left % 60).padStart(2, "0")} s`;
}

/**
 * The server's clock minus the browser's (ms), learnt from a token just issued (`iat` is
 * the server's "now"), so a kiosk whose clock is wrong still asks in time. Kept for a reload.
 */
export const serverClock = {
  learn(token) {
    const iat = Number(tokenClaims(token)?.iat);
    if (!Number.isFinite(iat)) return;
    sessionStorage.setItem(CLOCK_OFFSET_KEY, String(Math.round(iat * 1000 - Date.now())));
  },
  now() {
    const offset = Number(sessionStorage.getItem(CLOCK_OFFSET_KEY) ?? 0);
    return Date.now() + (Number.isFinite(offset) ? offset : 0);
  },
  forget() {
    sessionStorage.removeItem(CLOCK_OFFSET_KEY);
  },
};

/** Call `callback` at server time `atMs` (ms), chaining timers past setTimeout's limit; returns a cancel function. */
function at(atMs, callback) {
  let timer;
  const arm = () => {
    const delay = atMs - serverClock.now();
    if (delay <= 0) callback();
    else timer = setTimeout(arm, Math.min(delay, MAX_TIMEOUT_MS));
  };
  arm();
  return () => clearTimeout(timer);
}

/**
 * The re-confirm dialog. `actions`: login(username, password) → token response (throws
 * ApiError), useToken(token) (store it and send op 7; app.js then calls `refreshed`),
 * logOut(), expired() (the token ran out), errorMessage(error) (the text for a refusal).
 */
export class RenewalDialog {
  constructor(elements, actions) {
    this.el = elements;
    this.actions = actions;
    this.username = null;
    this.times = null;
    this.cancels = [];
    this.ticker = null;
    this.retry = null;
    this.pendingToken = null;
    this.asking = false;
    elements.form.addEventListener("submit", (event) => this._confirm(event));
    elements.logout.addEventListener("click", () => actions.logOut());
    // Escape would close a modal <dialog>: it stays until confirmed, logged out or expired.
    // (A browser may close it anyway on a second Escape: then it opens again.)
    elements.dialog.addEventListener("cancel", (event) => event.preventDefault());
    elements.dialog.addEventListener("close", () => {
      if (!this.asking) return;
      elements.dialog.showModal();
      elements.password.focus();
    });
  }

  /** Watch `token` of `username`: ask before it ends, end the session when it has. */
  watch(token, username) {
    this.stop();
    this.username = username;
    this.times = tokenTimes(token);
    if (!this.times) return;
    this.cancels.push(at(askAt(this.times) * 1000, () => this._open()));
    this.cancels.push(at((this.times.exp + EXPIRY_GRACE_SECONDS) * 1000, () => this.actions.expired()));
  }

  /** True when the token has passed its `exp` (server time). */
  get expired() {
    return this.times !== null && serverClock.now() >= this.times.exp * 1000;
  }

  /** The relay accepted the fresh token (REFRESHED, or a READY that identified with it). */
  refreshed() {
    if (this.pendingToken === null) return false;
    const token = this.pendingToken;
    this.pendingToken = null;
    this.watch(token, this.username);
    return true;
  }

  /** Stop watching (logout, session ended). */
  stop() {
    for (const cancel of this.cancels) cancel();
    this.cancels = [];
    clearInterval(this.ticker);
    clearTimeout(this.retry);
    this.ticker = null;
    this.pendingToken = null;
    this.asking = false;
    this._showError("");
    this.el.password.value = "";
    this.el.confirm.disabled = false;
    if (this.el.dialog.open) this.el.dialog.close();
  }

  _open() {
    if (this.el.dialog.open) return;
    this.el.username.value = this.username ?? "";
    this._showError("");
    this._tick();
    this.ticker = setInterval(() => this._tick(), 1000);
    this.asking = true;
    this.el.dialog.showModal();
    this.el.password.focus();
  }

  _tick() {
    const left = this.times.exp - serverClock.now() / 1000;
    this.el.countdown.textContent = countdown(left);
    this.el.dialog.dataset.secondsLeft = String(Math.max(0, Math.ceil(left)));
  }

  _showError(text) {
    this.el.error.textContent = text;
    this.el.error.hidden = !text;
  }

  async _confirm(event) {
    event.preventDefault();
    this.el.confirm.disabled = true;
    this._showError("");
    try {
      const response = await this.actions.login(this.username, this.el.password.value);
      if (!this.asking) return; // logged out or expired meanwhile: the token is not kept
      this.el.password.value = "";
      serverClock.learn(response.access_token);
      this.pendingToken = response.access_token;
      this._send();
    } catch (error) {
      if (!this.asking) return;
      this._showError(this.actions.errorMessage(error));
      this.el.confirm.disabled = false;
      this.el.password.select();
    }
  }

  /** Hand the fresh token over; resend it until the relay confirms (it may defer op 7). */
  _send() {
    if (this.pendingToken === null) return;
    if (this.actions.useToken(this.pendingToken)) {
      this.retry = setTimeout(() => this._send(), REFRESH_RETRY_SECONDS * 1000);
    } else {
      this.refreshed(); // no live relay session to extend: the next Identify uses the new token
    }
  }
}

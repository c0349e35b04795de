// The relay connection (the protocol docs/clients.md describes), like relay_client/client.py:
// Hello → Identify → READY; heartbeats on the server's interval, the first at a random
// point of the first interval; a missing ACK between two beats means a dead connection;
// reconnects as the close-code table says (policy below), with full-jitter backoff.

export const Op = Object.freeze({
  HELLO: 0,
  HEARTBEAT: 1,
  HEARTBEAT_ACK: 2,
  IDENTIFY: 3,
  COMMAND: 4,
  STATUS: 5,
  EVENT: 6,
  REFRESH: 7,
});

/**
 * Event names only the relay itself sends (op 6 with one of these `t`): never a factory's
 * message, so they never reach `onMessage` (a client sending one is closed with 4010).
 */
export const SERVER_EVENTS = Object.freeze(["READY", "RECONNECT", "PRESENCE_UPDATE", "REFRESHED", "DELIVERY_FAILED"]);

/** The relay's close reason when a session's token ran out without a refresh (op 7). */
export const TOKEN_EXPIRED_REASON = "token expired";
export const SESSION_EXPIRED_MESSAGE = "Session expired: log in again.";
export const TOKEN_EXPIRED_MESSAGE = "Your session ended: token expired. Log in again.";

export const CloseCode = Object.freeze({
  UNKNOWN_ERROR: 4000,
  UNKNOWN_OPCODE: 4001,
  DECODE_ERROR: 4002,
  NOT_AUTHENTICATED: 4003,
  AUTHENTICATION_FAILED: 4004,
  ALREADY_AUTHENTICATED: 4005,
  RATE_LIMITED: 4008,
  SESSION_TIMED_OUT: 4009,
  NOT_AUTHORIZED: 4010,
  TOO_SLOW: 4013,
  MESSAGE_TOO_BIG: 1009,
  SERVICE_RESTART: 1012,
});

export const Reconnect = Object.freeze({
  WITH_BACKOFF: "reconnect with backoff",
  AT_ONCE: "reconnect at once",
  WITH_NEW_TOKEN: "get a new token, then reconnect",
  NEVER: "do not reconnect: fix the client",
});

const POLICY = new Map([
  [CloseCode.UNKNOWN_OPCODE, Reconnect.NEVER],
  [CloseCode.DECODE_ERROR, Reconnect.NEVER],
  [CloseCode.AUTHENTICATION_FAILED, Reconnect.WITH_NEW_TOKEN],
  [CloseCode.ALREADY_AUTHENTICATED, Reconnect.NEVER],
  [CloseCode.NOT_AUTHORIZED, Reconnect.NEVER],
  [CloseCode.MESSAGE_TOO_BIG, Reconnect.NEVER],
  [CloseCode.SERVICE_RESTART, Reconnect.AT_ONCE],
]);

/** What to do after a close: `null` (no close frame) and unknown codes back off. */
export function reconnectPolicy(code) {
  return (code !== null && POLICY.get(code)) || Reconnect.WITH_BACKOFF;
}

/** Exponential backoff with full jitter: about 1 s doubling to 60 s. */
export class Backoff {
  constructor(first = 1, ceiling = 60, random = Math.random) {
    this.first = first;
    this.ceiling = ceiling;
    this.random = random;
    this.attempt = 0;
  }

  /** Seconds to wait; `atOnce` (1012) waits under a second and keeps the ceiling. */
  nextDelay(atOnce = false) {
    if (atOnce) return this.random();
    const ceiling = Math.min(this.ceiling, this.first * 2 ** this.attempt);
    this.attempt += 1;
    return this.random() * ceiling;
  }

  /** After a session that reached READY. */
  reset() {
    this.attempt = 0;
  }
}

/**
 * The relay's WebSocket URL from the server's setting `relayUrl` (`RELAY_PUBLIC_URL`): an
 * absolute `ws(s)://` URL as it is; a path (`/ws`) on the page's own origin, `wss:` when
 * the page came over HTTPS. Never from the page's own URL: a link must not choose where
 * the token goes.
 */
export function relayUrlFor(relayUrl, location) {
  if (!relayUrl.startsWith("/")) return relayUrl;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${relayUrl}`;
}

// A close code the browser reports when no close frame arrived (network failure,
// refused handshake): treated like the Python client's `None`.
const ABNORMAL_CLOSURE = 1006;
const NORMAL_CLOSURE = 1000;

/**
 * One long-lived relay session that survives relay restarts.
 *
 * Callbacks: onState({state, detail, delay}), onReady(user, sessionId, d) (`d`: READY's
 * data, with the `factories` snapshot for admins, operators and viewers), onMessage(frame)
 * (a factory's or an operator's message: op 4, 5, or 6 with a name of theirs),
 * onRefreshed(exp) (REFRESHED: the session now ends at `exp`, seconds since the epoch),
 * onPresence(d) (PRESENCE_UPDATE: `{username, online, since}`), onServerEvent(frame) (any
 * other of the relay's own events), onStopped({code, reason, expired}).
 * States: "connecting", "identifying", "ready", "reconnecting", "stopped".
 */
export class RelayConnection {
  constructor(url, token, handlers = {}, { backoff = new Backoff(), WebSocketClass = WebSocket } = {}) {
    this.url = url;
    this.token = token;
    this.handlers = handlers;
    this.backoff = backoff;
    this.WebSocketClass = WebSocketClass;
    this.ws = null;
    this.state = "idle";
    this.sessionsOpened = 0;
    this.lastSequence = null;
    this.user = null;
    this.sessionId = null;
    this._acked = true;
    this._beatTimer = null;
    this._retryTimer = null;
    this._zombie = false;
    this._closedByUs = false;
  }

  start() {
    this._connect();
  }

  /** Stop for good (logout): no reconnect. */
  close() {
    this._closedByUs = true;
    if (this.state === "stopped") return;
    clearTimeout(this._retryTimer);
    this._stopBeating();
    if (this.ws) this.ws.close(NORMAL_CLOSURE, "console closed");
    this.ws = null;
    this.token = null;
    this._setState("stopped", "logged out");
  }

  get ready() {
    return this.state === "ready";
  }

  /**
   * Send a Command (op 4); false if no READY session. `ttlMs`: how long the relay keeps it
   * for a factory that is not connected (`ttl_ms`; the relay's default without it).
   */
  sendCommand(payload, { target = null, id = null, ttlMs = null } = {}) {
    const d = { payload };
    if (target) d.target = target;
    if (id) d.id = id;
    if (ttlMs !== null) d.ttl_ms = ttlMs;
    return this._send({ op: Op.COMMAND, d });
  }

  /**
   * Extend the session with a fresh token of the same user (op 7). The relay answers
   * REFRESHED (`onRefreshed`). The token is also the one the next Identify uses, so a
   * reconnect meanwhile carries it too. Returns true if op 7 went out on a READY session.
   */
  refresh(token) {
    this.token = token;
    return this._send({ op: Op.REFRESH, d: { token } });
  }

  _send(frame) {
    if (!this.ready || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  _setState(state, detail = "", delay = null) {
    this.state = state;
    this.handlers.onState?.({ state, detail, delay });
  }

  _connect() {
    if (this._closedByUs) return;
    this._setState("connecting", this.url);
    this._zombie = false;
    let ws;
    try {
      ws = new this.WebSocketClass(this.url);
    } catch (error) {
      // A malformed URL: nothing a retry can fix.
      this._stop({ code: null, reason: `bad relay URL: ${error.message}` });
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => this._onRaw(ws, event.data);
    ws.onclose = (event) => this._onClose(ws, event);
  }

  _onRaw(ws, raw) {
    if (ws !== this.ws) return;
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      ws.close(NORMAL_CLOSURE, "undecodable frame");
      return;
    }
    if (typeof frame !== "object" || frame === null) return;
    if (frame.op === Op.HELLO) {
      this._onHello(ws, frame.d);
    } else if (frame.op === Op.HEARTBEAT_ACK) {
      this._acked = true;
    } else if (frame.op === Op.EVENT && frame.t === "READY") {
      this._onReady(frame);
    } else {
      if (typeof frame.s === "number") this.lastSequence = frame.s;
      if (frame.op === Op.EVENT && SERVER_EVENTS.includes(frame.t)) this._onServerEvent(frame);
      else this.handlers.onMessage?.(frame);
    }
  }

  _onHello(ws, d) {
    const interval = Number(d?.heartbeat_interval);
    this._setState("identifying", `session ${d?.session_id ?? "?"}`);
    ws.send(JSON.stringify({ op: Op.IDENTIFY, d: { token: this.token } }));
    if (Number.isFinite(interval) && interval > 0) this._startBeating(ws, interval);
  }

  _onReady(frame) {
    this.user = frame.d?.user ?? null;
    this.sessionId = frame.d?.session_id ?? null;
    this.lastSequence = typeof frame.s === "number" ? frame.s : null;
    this._acked = true;
    this.sessionsOpened += 1;
    this.backoff.reset();
    this._setState("ready", `${this.user?.username} (${this.user?.type})`);
    this.handlers.onReady?.(this.user, this.sessionId, frame.d ?? {});
  }

  _onServerEvent(frame) {
    const exp = Number(frame.d?.exp);
    if (frame.t === "REFRESHED" && Number.isFinite(exp)) this.handlers.onRefreshed?.(exp);
    else if (frame.t === "PRESENCE_UPDATE" && this.handlers.onPresence) this.handlers.onPresence(frame.d);
    else this.handlers.onServerEvent?.(frame);
  }

  _startBeating(ws, interval) {
    this._stopBeating();
    const beat = () => {
      if (ws !== this.ws) return;
      if (!this._acked) {
        // No ACK since the last beat: a zombie connection; drop it and reconnect.
        // The close handshake may never finish on a dead link: don't wait for it.
        this._zombie = true;
        ws.onclose = null;
        ws.close(NORMAL_CLOSURE, "no heartbeat ACK");
        this._onClose(ws, { code: ABNORMAL_CLOSURE, reason: "" });
        return;
      }
      this._acked = false;
      ws.send(JSON.stringify({ op: Op.HEARTBEAT, d: this.lastSequence }));
      this._beatTimer = setTimeout(beat, interval);
    };
    this._beatTimer = setTimeout(beat, interval * Math.random()); // first-beat jitter
  }

  _stopBeating() {
    clearTimeout(this._beatTimer);
    this._beatTimer = null;
  }

  _onClose(ws, event) {
    if (ws !== this.ws) return;
    this._stopBeating();
    this.ws = null;
    if (this._closedByUs) return;
    const reason = event.reason || "";
    // No close frame (network failure, refused handshake) and our own zombie close
    // both count as "no code": reconnect with backoff.
    const code = this._zombie || event.code === ABNORMAL_CLOSURE ? null : event.code;
    const policy = reconnectPolicy(code);
    if (policy === Reconnect.NEVER) {
      this._stop({ code, reason: `closed with ${code}${reason ? `: ${reason}` : ""} — fix the client` });
      return;
    }
    if (policy === Reconnect.WITH_NEW_TOKEN) {
      // A browser holds no password: the operator has to log in again.
      const message = reason === TOKEN_EXPIRED_REASON ? TOKEN_EXPIRED_MESSAGE : SESSION_EXPIRED_MESSAGE;
      this._stop({ code, reason: message, expired: true });
      return;
    }
    const delay = this.backoff.nextDelay(policy === Reconnect.AT_ONCE);
    let why;
    if (this._zombie) why = "no heartbeat ACK";
    else if (code === null) why = "connection lost or refused";
    else why = `closed with ${code}${reason ? `: ${reason}` : ""}`;
    this._setState("reconnecting", why, delay);
    this._retryTimer = setTimeout(() => this._connect(), delay * 1000);
  }

  _stop({ code, reason, expired = false }) {
    clearTimeout(this._retryTimer);
    this._stopBeating();
    this.token = null;
    this._setState("stopped", reason);
    this.handlers.onStopped?.({ code, reason, expired });
  }
}

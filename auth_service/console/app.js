// The operator console: login, live factory table, commands, event log, camera, users.
//
// Uses only the public APIs: the auth service's REST API (same origin as this page) and
// the relay's WebSocket. Where the relay is and whether LiveKit is on come from the server
// (`/console/config.json`), never from this page's URL. The token is kept in
// sessionStorage: it survives a reload, and goes at logout or when the tab closes. Before
// it runs out, a dialog asks for the password again and the live relay session goes on
// with the fresh token (renewal.js).

import { ApiError, consoleConfig, listFactories, login, logout, me } from "./api.js";
import { UsersPanel } from "./admin.js";
import { CommandTracker, DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, failureMeaning } from "./commands.js";
import { FACTORY_LIMIT, FactoryTable, localTime } from "./factories.js";
import { clock, describeCommand, describePayload, elapsed, idElement, sentence, timeElement } from "./labels.js";
import {
  Op,
  RelayConnection,
  SESSION_EXPIRED_MESSAGE,
  TOKEN_EXPIRED_MESSAGE,
  relayUrlFor,
} from "./relay.js";
import { RenewalDialog, serverClock, tokenTimes } from "./renewal.js";
import { VideoPanel } from "./video.js";

const EVENT_LOG_LIMIT = 200;
/** A presence change the log learns this much later says when it happened. */
const PRESENCE_LOG_DELAY_MS = 5000;
/** `GET /factories` page size (the API's largest). */
const FACTORY_PAGE = 200;
/** The factory accounts are listed again on a reconnect at most this often. */
const FACTORY_RELOAD_MS = 60_000;
const TOKEN_KEY = "factory-relay.token";
const COMMANDING_TYPES = ["operator", "admin"];

const $ = (id) => document.getElementById(id);

const state = {
  config: null, // {relay_url, livekit} from the server
  token: null,
  user: null,
  relay: null,
  factoriesLoadedAt: null, // when `GET /factories` was last asked (Date.now())
};

const video = new VideoPanel(
  { stage: $("video-stage"), status: $("video-status"), title: $("video-title") },
  () => expire(),
);

const users = new UsersPanel(
  {
    section: $("users-card"),
    rows: $("users").tBodies[0],
    form: $("user-create"),
    formError: $("user-create-error"),
    more: $("users-more"),
    count: $("users-count"),
  },
  () => ({ token: state.token, user: state.user }),
  () => expire(),
);

const renewal = new RenewalDialog(
  {
    dialog: $("renew-dialog"),
    form: $("renew-form"),
    countdown: $("renew-countdown"),
    username: $("renew-username"),
    password: $("renew-password"),
    error: $("renew-error"),
    confirm: $("renew-confirm"),
    logout: $("renew-logout"),
  },
  {
    login,
    useToken,
    logOut: () => clickLogout(),
    expired: () => endSession(TOKEN_EXPIRED_MESSAGE),
    errorMessage: (error) => loginErrorMessage(error),
  },
);

// -- token storage --------------------------------------------------------------------

const storedToken = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (token) => sessionStorage.setItem(TOKEN_KEY, token),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

// -- helpers ------------------------------------------------------------------

function newId(prefix) {
  // crypto.getRandomValues works outside secure contexts too (unlike randomUUID).
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function relayUrl() {
  return relayUrlFor(state.config.relay_url, window.location);
}

// -- event log ----------------------------------------------------------------

/** Add a log line; `parts` are strings and elements (e.g. ids), newest first. */
function logEvent(kind, parts, attributes = {}) {
  const entry = document.createElement("li");
  entry.className = `event ${kind}`;
  entry.dataset.kind = kind;
  for (const [key, value] of Object.entries(attributes)) entry.dataset[key] = value;
  const time = document.createElement("time");
  time.textContent = clock();
  const body = document.createElement("span");
  body.append(...(Array.isArray(parts) ? parts : [parts]));
  entry.append(time, " ", body);
  const log = $("event-log");
  log.prepend(entry);
  while (log.childElementCount > EVENT_LOG_LIMIT) log.lastElementChild.remove();
  return entry;
}

// -- connection state -----------------------------------------------------------

const STATE_LABELS = {
  idle: "not connected",
  connecting: "connecting…",
  identifying: "identifying…",
  ready: "connected",
  reconnecting: "reconnecting",
  stopped: "disconnected",
};

function showConnection({ state: connectionState, detail, delay }) {
  const badge = $("connection");
  badge.dataset.state = connectionState;
  let label = STATE_LABELS[connectionState] ?? connectionState;
  if (connectionState === "reconnecting" && delay !== null) {
    label = `reconnecting in ${delay.toFixed(1)} s`;
  }
  badge.textContent = label;
  badge.title = detail || "";
  if (state.relay) badge.dataset.sessions = String(state.relay.sessionsOpened);
  if (connectionState !== "ready") commands.away(); // answers sent meanwhile are not replayed
  updateCommandForm();
  if (connectionState === "ready") {
    logEvent("connection", `connected to the relay as ${detail}`);
  } else if (connectionState === "reconnecting") {
    logEvent("connection", `${detail}; reconnecting in ${delay.toFixed(1)} s`);
  } else if (connectionState === "connecting") {
    logEvent("connection", `connecting to ${detail}`);
  } else if (connectionState === "stopped") {
    logEvent("connection", `disconnected: ${detail}`);
  }
}

// -- factories ------------------------------------------------------------------

const commands = new CommandTracker($("commands"));

const table = new FactoryTable(
  {
    body: $("factories").tBodies[0],
    empty: $("no-factories"),
    full: $("factories-full"),
    scroll: $("factories-scroll"),
    scrollHint: $("factories-scroll-hint"),
    targets: $("command-target"),
  },
  {
    onSelect: (name) => selectFactory(name),
    onPresenceChange: (factory, before) => logPresence(factory, before),
    onFirstStatus: (name) => logEvent("factory", `${name} reported its first status`, { factory: name }),
    onChange: () => updateTargetWarning(),
  },
);

/** A factory went offline or came online: a line in the log (the time it happened on hover). */
function logPresence(factory, before) {
  let text = `${factory.name} went offline`;
  if (factory.online) text = before.since === null ? `${factory.name} came online` : `${factory.name} is online again`;
  const parts = [text];
  const at = factory.since === null ? null : localTime(factory.since);
  if (at !== null && Date.now() - at >= PRESENCE_LOG_DELAY_MS) {
    parts.push(" at ", timeElement(at, clock(new Date(at)))); // learnt late (a reconnect's snapshot)
  }
  logEvent("presence", parts, { factory: factory.name, presence: factory.online ? "online" : "offline" });
  updateTargetWarning();
}

function selectFactory(name) {
  table.select(name);
  $("command-target").value = table.get(name)?.name ?? "";
  updateTargetWarning();
  if (state.config.livekit) video.show(state.token, name);
}

/**
 * Every factory account (`GET /factories`, page by page up to the table's limit): at the
 * session's start, and again on a reconnect's READY at most every `FACTORY_RELOAD_MS` (a
 * relay restart reconnects every console at once).
 */
async function loadFactories() {
  const token = state.token;
  if (state.factoriesLoadedAt !== null && Date.now() - state.factoriesLoadedAt < FACTORY_RELOAD_MS) return;
  state.factoriesLoadedAt = Date.now();
  try {
    for (let offset = 0; offset < FACTORY_LIMIT; offset += FACTORY_PAGE) {
      const page = await listFactories(token, { limit: FACTORY_PAGE, offset });
      if (token !== state.token) return; // logged out meanwhile
      table.listed(page.items ?? []);
      if (offset + FACTORY_PAGE >= (page.total ?? 0)) return;
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      expire();
      return;
    }
    if (token === state.token) logEvent("connection", `the factory accounts could not be listed: ${loginErrorMessage(error)}`);
  }
}

setInterval(() => {
  table.tick();
  for (const command of commands.tick()) onExpired(command);
}, 1000);
window.addEventListener("resize", () => table.updateScrollHint());

// -- events and commands ----------------------------------------------------------

function showOutcome(kind, parts) {
  const outcome = $("command-outcome");
  outcome.replaceChildren(...parts);
  outcome.dataset.kind = kind;
  outcome.hidden = false;
}

/** The same parts again (an element can be in one place only): for the outcome under Send. */
function copyParts(parts) {
  return parts.map((part) => (typeof part === "string" ? part : part.cloneNode(true)));
}

function onCommandAnswer(name, sender, payload, attributes) {
  const commandId = payload.command_id;
  const known = commands.get(commandId);
  const what = known ? describeCommand(known.payload) : "command";
  let kind;
  let parts;
  if (name === "COMMAND_ACK") {
    const result = payload.result === undefined ? "" : `: ${describePayload(payload.result)}`;
    kind = "ack";
    parts = [`${sender} acknowledged ${what} `, idElement(commandId), result];
    commands.answered(commandId, { acknowledged: true, sender });
    known?.logEntry?.classList.remove("expired"); // a late answer replaces "expired"
    known?.logEntry?.classList.add("acked");
  } else if (name === "COMMAND_REJECTED") {
    const reason = payload.reason ?? "no reason given";
    kind = "rejected";
    parts = [`${sender} rejected ${what} `, idElement(commandId), `: ${reason}`];
    commands.answered(commandId, { acknowledged: false, sender, reason });
    known?.logEntry?.classList.remove("expired");
    known?.logEntry?.classList.add("rejected");
  } else {
    kind = "event";
    parts = [`${sender} ${name} for ${what} `, idElement(commandId), ` ${describePayload(payload)}`];
  }
  logEvent(kind, parts, attributes);
  if (known) showOutcome(kind, copyParts(parts));
}

/** No answer by the command's `expires_at`: it was delivered to nobody in time, or its answer was lost. */
function onExpired(command) {
  const by = clock(new Date(command.expiresAt));
  const why = command.target ? `no answer from ${command.target} by ${by}` : `no factory answered by ${by}`;
  const parts = [`${describeCommand(command.payload)} `, idElement(command.id), ` expired: ${why}`];
  command.logEntry?.classList.add("expired");
  logEvent("expired", parts, { commandId: command.id, event: "EXPIRED" });
  showOutcome("expired", copyParts(parts));
}

function onEvent(frame) {
  const name = frame.t ?? "EVENT";
  const sender = frame.d?.from?.username ?? "?";
  const payload = frame.d?.payload;
  const commandId = payload && typeof payload === "object" ? payload.command_id : undefined;
  const attributes = { event: name, factory: sender };
  if (typeof commandId === "string") {
    attributes.commandId = commandId;
    onCommandAnswer(name, sender, payload, attributes);
    return;
  }
  logEvent("event", `${sender} ${name} ${describePayload(payload)}`, attributes);
}

/** A message someone sent (op 5, op 6): the relay's own events never come here (relay.js). */
function onMessage(frame) {
  if (frame.op === Op.STATUS) table.status(frame.d);
  else if (frame.op === Op.EVENT) onEvent(frame);
}

/**
 * The relay's own events other than READY, REFRESHED and PRESENCE_UPDATE: noted, never
 * taken for a factory's. DELIVERY_FAILED (`{id, reason}`) names a message of ours the
 * relay dropped.
 */
function onServerEvent(frame) {
  const attributes = { event: frame.t };
  if (frame.t === "DELIVERY_FAILED" && typeof frame.d?.id === "string") {
    attributes.commandId = frame.d.id;
    const command = commands.deliveryFailed(frame.d.id, frame.d.reason);
    const parts = [`the relay could not deliver ${command ? describeCommand(command.payload) : "message"} `,
      idElement(frame.d.id), ` (${frame.d.reason ?? "no reason given"}): ${failureMeaning(frame.d.reason)}`];
    command?.logEntry?.classList.add("rejected");
    logEvent("rejected", parts, attributes);
    if (command) showOutcome("error", copyParts(parts));
    return;
  }
  logEvent("connection", `relay event ${frame.t} ${describePayload(frame.d)}`, attributes);
}

/** REFRESHED: the live session now runs until `exp` with the fresh token. */
function onRefreshed(exp) {
  const until = clock(new Date(exp * 1000 - (serverClock.now() - Date.now())));
  logEvent("connection", `session extended: the password was confirmed, the session now runs until ${until}`, {
    event: "REFRESHED",
  });
  renewal.refreshed();
}

/**
 * A fresh token of the same user (the dialog's confirmation): stored, used by the REST
 * calls, and sent on the live relay session (op 7). True when op 7 went out and REFRESHED
 * is awaited; false when there is no READY session (the next Identify carries it).
 */
function useToken(token) {
  state.token = token;
  storedToken.set(token);
  return state.relay?.refresh(token) ?? false;
}

function canCommand() {
  return state.user !== null && COMMANDING_TYPES.includes(state.user.type);
}

/** Per action: `stop` has no speed; `start`'s is optional (1200 by default); `set speed` needs one. */
function updateCommandForm() {
  const ready = state.relay?.ready ?? false;
  $("command-send").disabled = !(ready && canCommand());
  const action = $("command-action").value;
  $("command-rpm-field").hidden = action === "stop";
  $("command-rpm").required = action === "set_speed";
  let note = "";
  if (state.user && !canCommand()) note = `A ${state.user.type} can watch but not send commands.`;
  else if (!ready) note = "Commands can be sent once the relay connection is up.";
  $("command-note").textContent = note;
  updateTargetWarning();
}

/** The expiry field in seconds, or null when it is not a whole number in range. */
function ttlSeconds() {
  const seconds = $("command-ttl").valueAsNumber;
  return Number.isInteger(seconds) && seconds >= 1 && seconds <= MAX_TTL_SECONDS ? seconds : null;
}

/** The warning for `target` (a name, or "" for every factory): null when all is well. */
function offlineWarning(target, ttlMs) {
  const keep = `The relay keeps the command for ${elapsed(ttlMs)}`;
  if (!target) {
    const offline = table.all().filter((factory) => factory.online === false).length;
    if (offline === 0) return null;
    return `${offline} of ${table.size} factories are offline. ${keep}: they get it only if they come back by then.`;
  }
  const factory = table.get(target);
  if (factory?.online !== false) return null;
  const since = factory.since === null ? "" : ` since ${clock(new Date(localTime(factory.since)))}`;
  return `${factory.name} is offline${since}. ${keep} and delivers it if ${factory.name} comes back by then; otherwise the command expires unexecuted.`;
}

/**
 * Before sending: a warning when the target is offline (or, for every factory, when some
 * are), kept current as presence changes. The operator may still send ("Send anyway"):
 * the relay keeps the command for its expiry time.
 */
function updateTargetWarning() {
  const target = $("command-target").value;
  const text = canCommand() ? offlineWarning(target, (ttlSeconds() ?? DEFAULT_TTL_SECONDS) * 1000) : null;
  const warning = $("command-warning");
  if (warning.textContent !== (text ?? "")) warning.textContent = text ?? "";
  warning.hidden = text === null;
  $("command-send").textContent = text !== null && target ? "Send anyway" : "Send";
}

function commandPayload() {
  const action = $("command-action").value;
  const payload = { action };
  if (action === "stop") return payload;
  const rpm = $("command-rpm").valueAsNumber;
  if (Number.isNaN(rpm) && action === "start") return payload;
  if (!Number.isInteger(rpm)) return null;
  payload.rpm = rpm;
  return payload;
}

function sendCommand(event) {
  event.preventDefault();
  const target = $("command-target").value || null;
  const payload = commandPayload();
  if (payload === null) {
    showOutcome("error", ["The speed must be a whole number of rpm."]);
    return;
  }
  const ttl = ttlSeconds();
  if (ttl === null) {
    showOutcome("error", [`The expiry must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS}.`]);
    return;
  }
  const id = newId("cmd");
  const ttlMs = ttl * 1000;
  if (!state.relay?.sendCommand(payload, { target, id, ttlMs })) {
    showOutcome("error", ["Not connected: the command was not sent."]);
    return;
  }
  const targetOffline = target !== null && table.get(target)?.online === false;
  const command = commands.sent({ id, payload, target, ttlMs, targetOffline });
  const description = `${describeCommand(payload)} → ${target ?? "all factories"}`;
  const expiry = `, expires after ${elapsed(ttlMs)}${targetOffline ? ` (${target} is offline)` : ""}`;
  command.logEntry = logEvent("command", ["sent ", idElement(id), `: ${description}${expiry}`], { commandId: id });
  const waiting = targetOffline
    ? `Sent ${description}; ${target} is offline: it gets the command if it is back within ${elapsed(ttlMs)}.`
    : `Sent ${description}; waiting for the answer…`;
  showOutcome("sent", [waiting]);
}

// -- login and session ----------------------------------------------------------

function showLoginError(text) {
  const error = $("login-error");
  error.textContent = text;
  error.hidden = !text;
}

/** `45 s`, `5 min`: how long Retry-After asks to wait. */
function duration(seconds) {
  return seconds < 60 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`;
}

/** The server's `detail` once, with what only the headers say (how long to wait). */
function loginErrorMessage(error) {
  if (!(error instanceof ApiError)) return sentence(error.message);
  const retryAfter = Number.parseInt(error.retryAfter ?? "", 10);
  const wait = error.status === 429 && retryAfter > 0 ? ` Next attempt in ${duration(retryAfter)}.` : "";
  return `${sentence(error.detail)}${wait}`;
}

async function submitLogin(event) {
  event.preventDefault();
  const button = $("login-submit");
  button.disabled = true;
  showLoginError("");
  try {
    const response = await login($("username").value, $("password").value);
    $("password").value = "";
    serverClock.learn(response.access_token);
    await startSession(response.access_token);
  } catch (error) {
    showLoginError(loginErrorMessage(error));
  } finally {
    button.disabled = false;
  }
}

function resetView() {
  table.clear();
  commands.clear();
  state.factoriesLoadedAt = null;
  $("event-log").replaceChildren();
  $("command-outcome").hidden = true;
  $("video-title").textContent = "Camera";
  $("video-status").textContent = "Select a factory in the table to watch its camera.";
  delete $("video-status").dataset.kind;
}

/** Use `token`: ask who it belongs to, then show what that type of user may see. */
async function startSession(token) {
  const times = tokenTimes(token);
  if (times && serverClock.now() >= times.exp * 1000) {
    endSession(TOKEN_EXPIRED_MESSAGE);
    return;
  }
  let user;
  try {
    user = await me(token);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      endSession(SESSION_EXPIRED_MESSAGE);
      return;
    }
    throw error;
  }
  resetView();
  state.token = token;
  state.user = user;
  storedToken.set(token);
  $("login-view").hidden = true;
  $("logout").hidden = false;
  $("whoami").textContent = `${user.username} (${user.type})`;
  renewal.watch(token, user.username);
  if (user.type === "factory") {
    $("factory-account").textContent = user.username;
    $("factory-view").hidden = false;
    return;
  }
  $("console-view").hidden = false;
  $("video-card").hidden = !state.config.livekit;
  if (user.type === "admin") users.open();
  connectRelay(token);
}

function connectRelay(token) {
  state.relay = new RelayConnection(relayUrl(), token, {
    onState: showConnection,
    onReady: (user, _sessionId, ready) => {
      state.user = { ...state.user, ...user };
      if (Array.isArray(ready.factories)) table.snapshot(ready.factories);
      loadFactories(); // accounts created meanwhile, and those never seen online
      updateCommandForm();
      renewal.refreshed(); // a reconnect identified with a fresh token the dialog got
    },
    onMessage,
    onPresence: (update) => table.presence(update),
    onRefreshed,
    onServerEvent,
    onStopped: ({ expired, reason }) => {
      if (expired) endSession(reason);
      else $("command-note").textContent = `Relay connection stopped: ${reason}`;
    },
  });
  state.relay.start();
}

/** Back to the login form, forgetting the token. */
function endSession(message) {
  renewal.stop();
  state.relay?.close();
  state.relay = null;
  state.token = null;
  state.user = null;
  storedToken.clear();
  serverClock.forget();
  video.disconnect();
  users.close();
  $("whoami").textContent = "";
  $("logout").hidden = true;
  $("console-view").hidden = true;
  $("factory-view").hidden = true;
  $("login-view").hidden = false;
  const badge = $("connection");
  badge.dataset.state = "stopped";
  badge.textContent = message ? "logged out" : "not connected";
  showLoginError(message);
  $("username").focus();
}

function expire() {
  endSession(renewal.expired ? TOKEN_EXPIRED_MESSAGE : SESSION_EXPIRED_MESSAGE);
}

async function clickLogout() {
  const token = state.token;
  endSession("");
  if (token) await logout(token).catch(() => {});
}

// -- start ------------------------------------------------------------------------

async function boot() {
  $("login-form").addEventListener("submit", submitLogin);
  $("command-form").addEventListener("submit", sendCommand);
  $("command-action").addEventListener("change", updateCommandForm);
  $("command-target").addEventListener("change", updateTargetWarning);
  $("command-ttl").addEventListener("input", updateTargetWarning);
  $("logout").addEventListener("click", clickLogout);
  updateCommandForm();
  try {
    state.config = await consoleConfig();
  } catch (error) {
    $("login-submit").disabled = true;
    showLoginError(`The console's configuration could not be loaded: ${sentence(error.message)}`);
    return;
  }
  $("relay-url").textContent = relayUrl();
  const token = storedToken.get();
  if (!token) return;
  try {
    await startSession(token);
  } catch (error) {
    showLoginError(loginErrorMessage(error)); // the auth service is down: keep the token
  }
}

boot().finally(() => {
  document.body.dataset.booted = "true";
});

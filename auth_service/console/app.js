// The operator console: login, live factory table, commands, event log, camera, users.
//
// Uses only the public APIs: the auth service's REST API (same origin as this page) and
// the relay's WebSocket. Where the relay is and whether LiveKit is on come from the server
// (`/console/config.json`), never from this page's URL. The token is kept in
// sessionStorage: it survives a reload, and goes at logout or when the tab closes. Before
// it runs out, a dialog asks for the password again and the live relay session goes on
// with the fresh token (renewal.js).

import { ApiError, consoleConfig, login, logout, me } from "./api.js";
import { UsersPanel } from "./admin.js";
import {
  describeCommand,
  describePayload,
  formatValue,
  idElement,
  labelOf,
  orderedKeys,
  sentence,
} from "./labels.js";
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
const STALE_AFTER_SECONDS = 10;
const TOKEN_KEY = "factory-relay.token";
const COMMANDING_TYPES = ["operator", "admin"];

const $ = (id) => document.getElementById(id);

const state = {
  config: null, // {relay_url, livekit} from the server
  token: null,
  user: null,
  relay: null,
  factories: new Map(), // username → {name, payload, lastSeen, row}
  commands: new Map(), // command id → {payload, target, entry}
  selected: null,
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

function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
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

/** A status payload as key → value; a non-object payload is shown under "payload". */
function asReadings(payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return { payload };
  return payload;
}

/** The factory's own readings, each a label over its value (`data-key` on the value). */
function readingsList(payload) {
  const list = document.createElement("dl");
  list.className = "readings";
  for (const key of orderedKeys(payload)) {
    const item = document.createElement("div");
    item.className = "reading";
    const label = document.createElement("dt");
    label.textContent = labelOf(key);
    label.title = key;
    const value = document.createElement("dd");
    value.dataset.key = key;
    value.textContent = formatValue(payload[key]);
    item.append(label, value);
    list.append(item);
  }
  return list;
}

function renderRow(factory) {
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = factory.name;
  const seen = document.createElement("td");
  seen.className = "last-seen";
  seen.dataset.key = "last-seen";
  const readings = document.createElement("td");
  readings.className = "readings-cell";
  readings.append(readingsList(factory.payload));
  factory.row.replaceChildren(name, seen, readings);
  updateSeen(factory);
}

function updateSeen(factory, now = Date.now()) {
  const cell = factory.row.querySelector(".last-seen");
  const seconds = Math.max(0, Math.floor((now - factory.lastSeen) / 1000));
  cell.textContent = `${seconds} s ago`;
  cell.title = new Date(factory.lastSeen).toLocaleString();
  factory.row.classList.toggle("stale", seconds >= STALE_AFTER_SECONDS);
}

/** Show the sideways-scroll hint only while the table is wider than its box. */
function updateScrollHint() {
  const box = $("factories-scroll");
  const overflowing = box.scrollWidth > box.clientWidth + 1;
  box.classList.toggle("overflowing", overflowing);
  $("factories-scroll-hint").hidden = !overflowing;
}

function onStatus(frame) {
  const sender = frame.d?.from?.username;
  if (!sender) return;
  const payload = asReadings(frame.d.payload);
  let factory = state.factories.get(sender);
  if (!factory) {
    const row = document.createElement("tr");
    row.dataset.factory = sender;
    row.tabIndex = 0;
    row.addEventListener("click", () => selectFactory(sender));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") selectFactory(sender);
    });
    factory = { name: sender, payload, lastSeen: Date.now(), row };
    state.factories.set(sender, factory);
    insertSorted($("factories").tBodies[0], row, sender);
    addTarget(sender);
    $("no-factories").hidden = true;
    logEvent("factory", `${sender} reported its first status`, { factory: sender });
  }
  factory.payload = payload;
  factory.lastSeen = Date.now();
  factory.row.dataset.updates = String(Number(factory.row.dataset.updates ?? 0) + 1);
  renderRow(factory);
  factory.row.classList.toggle("selected", state.selected === sender);
  updateScrollHint();
}

function insertSorted(parent, element, key) {
  const after = Array.from(parent.children).find((child) => child.dataset.factory > key);
  parent.insertBefore(element, after ?? null);
}

function addTarget(name) {
  const option = document.createElement("option");
  option.value = name;
  option.textContent = name;
  option.dataset.factory = name;
  const select = $("command-target");
  const after = Array.from(select.options).find((o) => o.value && o.value > name);
  select.insertBefore(option, after ?? null);
}

function selectFactory(name) {
  state.selected = name;
  for (const factory of state.factories.values()) {
    factory.row.classList.toggle("selected", factory.name === name);
  }
  $("command-target").value = name;
  if (state.config.livekit) video.show(state.token, name);
}

setInterval(() => {
  const now = Date.now();
  for (const factory of state.factories.values()) updateSeen(factory, now);
}, 1000);
window.addEventListener("resize", updateScrollHint);

// -- events and commands ----------------------------------------------------------

function showOutcome(kind, parts) {
  const outcome = $("command-outcome");
  outcome.replaceChildren(...parts);
  outcome.dataset.kind = kind;
  outcome.hidden = false;
}

function onCommandAnswer(name, sender, payload, attributes) {
  const commandId = payload.command_id;
  const command = state.commands.get(commandId);
  const what = command ? describeCommand(command.payload) : "command";
  let kind;
  let parts;
  if (name === "COMMAND_ACK") {
    const result = payload.result === undefined ? "" : `: ${describePayload(payload.result)}`;
    kind = "ack";
    parts = [`${sender} acknowledged ${what} `, idElement(commandId), result];
    command?.entry.classList.add("acked");
  } else if (name === "COMMAND_REJECTED") {
    kind = "rejected";
    parts = [`${sender} rejected ${what} `, idElement(commandId), `: ${payload.reason ?? "no reason given"}`];
    command?.entry.classList.add("rejected");
  } else {
    kind = "event";
    parts = [`${sender} ${name} for ${what} `, idElement(commandId), ` ${describePayload(payload)}`];
  }
  logEvent(kind, parts, attributes);
  if (command) showOutcome(kind, parts.map((part) => (typeof part === "string" ? part : idElement(commandId))));
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
  if (frame.op === Op.STATUS) onStatus(frame);
  else if (frame.op === Op.EVENT) onEvent(frame);
}

/**
 * The relay's own events other than READY and REFRESHED: noted, never taken for a
 * factory's. DELIVERY_FAILED (`{id, reason}`) names a message of ours the relay dropped.
 */
function onServerEvent(frame) {
  const attributes = { event: frame.t };
  if (frame.t === "DELIVERY_FAILED" && typeof frame.d?.id === "string") {
    attributes.commandId = frame.d.id;
    const command = state.commands.get(frame.d.id);
    const parts = [`the relay could not deliver ${command ? describeCommand(command.payload) : "message"} `,
      idElement(frame.d.id), ` (${frame.d.reason ?? "no reason given"}): it was executed nowhere`];
    command?.entry.classList.add("rejected");
    logEvent("rejected", parts, attributes);
    if (command) showOutcome("error", parts.map((part) => (typeof part === "string" ? part : idElement(frame.d.id))));
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
  const id = newId("cmd");
  if (!state.relay?.sendCommand(payload, { target, id })) {
    showOutcome("error", ["Not connected: the command was not sent."]);
    return;
  }
  const description = `${describeCommand(payload)} → ${target ?? "all factories"}`;
  const entry = logEvent("command", ["sent ", idElement(id), `: ${description}`], { commandId: id });
  state.commands.set(id, { payload, target, entry });
  if (state.commands.size > EVENT_LOG_LIMIT) {
    state.commands.delete(state.commands.keys().next().value);
  }
  showOutcome("sent", [`Sent ${description}; waiting for the answer…`]);
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
  state.factories.clear();
  state.commands.clear();
  state.selected = null;
  $("factories").tBodies[0].replaceChildren();
  $("no-factories").hidden = false;
  updateScrollHint();
  for (const option of Array.from($("command-target").options)) if (option.value) option.remove();
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
    onReady: (user) => {
      state.user = { ...state.user, ...user };
      updateCommandForm();
      renewal.refreshed(); // a reconnect identified with a fresh token the dialog got
    },
    onMessage,
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

// The operator console: login, live factory table, commands, event log, camera.
//
// Uses only the public APIs: the auth service's REST API (same origin as this page) and
// the relay's WebSocket. The relay URL is the `?relay=ws://host:port/ws` query parameter;
// without it, `ws(s)://<this host>:8001/ws` when the page comes from port 8000 (the auth
// service itself, `make run`), else `ws(s)://<this origin>/ws` (behind the load balancer).
// The token is kept in memory only.

import { ApiError, login, logout } from "./api.js";
import { Op, RelayConnection, consoleRelayUrl } from "./relay.js";
import { VideoPanel } from "./video.js";

const EVENT_LOG_LIMIT = 200;
const STALE_AFTER_SECONDS = 10;

const $ = (id) => document.getElementById(id);
const relayUrl = () => consoleRelayUrl(window.location);

const state = {
  token: null, // in memory only
  user: null,
  relay: null,
  factories: new Map(), // username → {payload, lastSeen, row, cells}
  columns: [], // payload keys, in order first seen
  commands: new Map(), // command id → {description, entry}
  selected: null,
};

const video = new VideoPanel(
  { stage: $("video-stage"), status: $("video-status"), title: $("video-title") },
  () => expire(),
);

// -- helpers ------------------------------------------------------------------

function newId(prefix) {
  // crypto.getRandomValues works outside secure contexts too (unlike randomUUID).
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false });
}

function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function summary(payload) {
  if (payload === null || payload === undefined) return "";
  if (typeof payload !== "object") return String(payload);
  return Object.entries(payload)
    .map(([key, value]) => `${key}=${formatValue(value)}`)
    .join(" ");
}

// -- event log ----------------------------------------------------------------

function logEvent(kind, text, attributes = {}) {
  const entry = document.createElement("li");
  entry.className = `event ${kind}`;
  entry.dataset.kind = kind;
  for (const [key, value] of Object.entries(attributes)) entry.dataset[key] = value;
  const time = document.createElement("time");
  time.textContent = clock();
  const body = document.createElement("span");
  body.textContent = text;
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

function ensureColumns(payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    payload = { payload };
  }
  let added = false;
  for (const key of Object.keys(payload)) {
    if (!state.columns.includes(key)) {
      state.columns.push(key);
      added = true;
    }
  }
  if (added) rebuildTable();
  return payload;
}

function rebuildTable() {
  const headRow = document.querySelector("#factories thead tr");
  const headers = ["factory", ...state.columns, "last seen"].map((name) => {
    const th = document.createElement("th");
    th.textContent = name;
    th.scope = "col";
    return th;
  });
  headRow.replaceChildren(...headers);
  for (const factory of state.factories.values()) renderRow(factory);
}

function renderRow(factory) {
  const cells = [factory.name, ...state.columns.map((key) => formatValue(factory.payload[key]))];
  const row = factory.row;
  row.replaceChildren(
    ...cells.map((text, index) => {
      const td = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) td.scope = "row";
      else td.dataset.key = state.columns[index - 1];
      td.textContent = text;
      return td;
    }),
  );
  const seen = document.createElement("td");
  seen.className = "last-seen";
  seen.dataset.key = "last-seen";
  row.append(seen);
  updateSeen(factory);
}

function updateSeen(factory, now = Date.now()) {
  const cell = factory.row.querySelector(".last-seen");
  const seconds = Math.max(0, Math.floor((now - factory.lastSeen) / 1000));
  cell.textContent = `${seconds} s ago`;
  cell.title = new Date(factory.lastSeen).toLocaleString();
  factory.row.classList.toggle("stale", seconds >= STALE_AFTER_SECONDS);
}

function onStatus(frame) {
  const sender = frame.d?.from?.username;
  if (!sender) return;
  const payload = ensureColumns(frame.d.payload);
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
  video.show(state.token, name);
}

setInterval(() => {
  const now = Date.now();
  for (const factory of state.factories.values()) updateSeen(factory, now);
}, 1000);

// -- events and commands ----------------------------------------------------------

function onEvent(frame) {
  const name = frame.t ?? "EVENT";
  const sender = frame.d?.from?.username ?? "?";
  const payload = frame.d?.payload;
  const commandId = payload && typeof payload === "object" ? payload.command_id : undefined;
  const attributes = { event: name, factory: sender };
  if (typeof commandId === "string") {
    attributes.commandId = commandId;
    const command = state.commands.get(commandId);
    const about = command ? `${commandId} (${command.description})` : commandId;
    if (name === "COMMAND_ACK") {
      const result = payload.result === undefined ? "" : `: ${summary(payload.result)}`;
      logEvent("ack", `${sender} acknowledged ${about}${result}`, attributes);
      command?.entry.classList.add("acked");
    } else if (name === "COMMAND_REJECTED") {
      logEvent("rejected", `${sender} rejected ${about}: ${payload.reason ?? "no reason"}`, attributes);
      command?.entry.classList.add("rejected");
    } else {
      logEvent("event", `${sender} ${name} for ${about} ${summary(payload)}`, attributes);
    }
    return;
  }
  logEvent("event", `${sender} ${name} ${summary(payload)}`, attributes);
}

function onMessage(frame) {
  if (frame.op === Op.STATUS) onStatus(frame);
  else if (frame.op === Op.EVENT) onEvent(frame);
}

function canCommand() {
  return state.user !== null && ["operator", "admin"].includes(state.user.type);
}

function updateCommandForm() {
  const ready = state.relay?.ready ?? false;
  $("command-send").disabled = !(ready && canCommand());
  const action = $("command-action").value;
  $("command-rpm").disabled = action === "stop";
  let note = "";
  if (state.user && !canCommand()) note = `A ${state.user.type} can watch but not send commands.`;
  else if (!ready) note = "Commands can be sent once the relay connection is up.";
  $("command-note").textContent = note;
}

function sendCommand(event) {
  event.preventDefault();
  const target = $("command-target").value || null;
  const action = $("command-action").value;
  const payload = { action };
  if (action !== "stop") {
    const rpm = $("command-rpm").valueAsNumber;
    if (!Number.isInteger(rpm)) {
      $("command-note").textContent = "RPM must be a whole number.";
      return;
    }
    payload.rpm = rpm;
  }
  const id = newId("cmd");
  if (!state.relay?.sendCommand(payload, { target, id })) {
    $("command-note").textContent = "Not connected: the command was not sent.";
    return;
  }
  const description = `${summary(payload)} → ${target ?? "all factories"}`;
  const entry = logEvent("command", `sent ${id}: ${description}`, { commandId: id });
  state.commands.set(id, { description, entry });
  if (state.commands.size > EVENT_LOG_LIMIT) {
    state.commands.delete(state.commands.keys().next().value);
  }
}

// -- login and session ----------------------------------------------------------

function showLoginError(text) {
  const error = $("login-error");
  error.textContent = text;
  error.hidden = !text;
}

async function submitLogin(event) {
  event.preventDefault();
  const button = $("login-submit");
  button.disabled = true;
  showLoginError("");
  try {
    const response = await login($("username").value, $("password").value);
    $("password").value = "";
    startSession(response.access_token);
  } catch (error) {
    if (error instanceof ApiError && error.status === 429) {
      const wait = error.retryAfter ? ` Retry after ${error.retryAfter} s.` : "";
      showLoginError(`Too many failed logins: ${error.detail}.${wait}`);
    } else if (error instanceof ApiError) {
      showLoginError(`Login failed: ${error.detail}`);
    } else {
      showLoginError(`Login failed: ${error.message}`);
    }
  } finally {
    button.disabled = false;
  }
}

function resetView() {
  state.factories.clear();
  state.columns = [];
  state.commands.clear();
  state.selected = null;
  $("factories").tBodies[0].replaceChildren();
  rebuildTable();
  $("no-factories").hidden = false;
  for (const option of Array.from($("command-target").options)) if (option.value) option.remove();
  $("event-log").replaceChildren();
  $("video-title").textContent = "Camera";
  $("video-status").textContent = "Select a factory in the table to watch its camera.";
  delete $("video-status").dataset.kind;
}

function startSession(token) {
  resetView();
  state.token = token;
  $("login-view").hidden = true;
  $("console-view").hidden = false;
  $("logout").hidden = false;
  state.relay = new RelayConnection(relayUrl(), token, {
    onState: showConnection,
    onReady: (user) => {
      state.user = user;
      $("whoami").textContent = `${user.username} (${user.type})`;
      updateCommandForm();
    },
    onMessage,
    onStopped: ({ expired, reason }) => {
      if (expired) endSession(reason);
      else $("command-note").textContent = `Relay connection stopped: ${reason}`;
    },
  });
  state.relay.start();
}

/** Back to the login form, forgetting the token. */
function endSession(message) {
  state.relay?.close();
  state.relay = null;
  state.token = null;
  state.user = null;
  video.disconnect();
  $("whoami").textContent = "";
  $("logout").hidden = true;
  $("console-view").hidden = true;
  $("login-view").hidden = false;
  const badge = $("connection");
  badge.dataset.state = "stopped";
  badge.textContent = message ? "session expired" : "not connected";
  showLoginError(message);
  $("username").focus();
}

function expire() {
  endSession("session expired — log in again");
}

async function clickLogout() {
  const token = state.token;
  endSession("");
  if (token) await logout(token).catch(() => {});
}

// -- start ------------------------------------------------------------------------

$("relay-url").textContent = relayUrl();
$("login-form").addEventListener("submit", submitLogin);
$("command-form").addEventListener("submit", sendCommand);
$("command-action").addEventListener("change", updateCommandForm);
$("logout").addEventListener("click", clickLogout);
updateCommandForm();

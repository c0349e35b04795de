// The factory table: every factory account, online or offline since when, and its latest
// status. Rows come from the factory accounts (`GET /factories`), READY's snapshot,
// `PRESENCE_UPDATE` and statuses (op 5); an offline factory keeps its last status on
// screen, marked stale. Times from the relay (`since`, a status's `ts`) are on the
// server's clock: shown relative to the server's "now", absolute (local) on hover.

import { dateAndTime, elapsed, formatValue, labelOf, orderedKeys, timeElement } from "./labels.js";
import { Presence, presenceEntry, presenceOf, supersedes } from "./presence.js";
import { serverClock } from "./renewal.js";

/** At most this many rows (and target options): a bigger fleet is cut, and says so. */
export const FACTORY_LIMIT = 2000;
/** An online factory whose latest status is this old has its status age shown as late. */
export const LATE_AFTER_SECONDS = 10;

const PRESENCE_WORDS = {
  [Presence.ONLINE]: "Online",
  [Presence.OFFLINE]: "Offline",
  [Presence.UNKNOWN]: "Unknown",
};

/** A server time (ms) on this browser's clock, for absolute times. */
export function localTime(serverMs) {
  return serverMs - (serverClock.now() - Date.now());
}

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

function span(className, text = "") {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

/**
 * Handlers: onSelect(name) (a row clicked), onPresenceChange(factory, before) (a known
 * presence flipped; `before`: the `{online, since}` it replaced), onFirstStatus(name), onChange() (anything the command form shows).
 */
export class FactoryTable {
  constructor(elements, handlers) {
    this.elements = elements; // {body, empty, full, scroll, scrollHint, targets}
    this.handlers = handlers;
    this.factories = new Map(); // lower-case username → factory
    this.selected = null;
    this.presenceKnown = false; // a snapshot arrived: a factory it did not list is offline
    this.pending = null; // while a snapshot is applied: the factories to render at its end
  }

  get size() {
    return this.factories.size;
  }

  /** The factory named `name` (any case), or undefined. */
  get(name) {
    return typeof name === "string" ? this.factories.get(name.toLowerCase()) : undefined;
  }

  all() {
    return Array.from(this.factories.values());
  }

  clear() {
    this.factories.clear();
    this.selected = null;
    this.presenceKnown = false;
    this.elements.body.replaceChildren();
    for (const option of Array.from(this.elements.targets.options)) if (option.value) option.remove();
    this.elements.empty.hidden = false;
    this.elements.full.hidden = true;
    this.updateScrollHint();
  }

  /** Factory accounts from `GET /factories`: each gets a row, presence as known. */
  listed(items) {
    for (const item of items) {
      if (typeof item?.username !== "string") continue;
      const factory = this._ensure(item.username);
      if (!factory) break;
      factory.disabled = item.disabled === true;
      this._renderName(factory);
    }
    this._changed();
  }

  /**
   * READY's `factories`: every factory online now or seen lately, with its latest status.
   * A factory it leaves out is not online now (offline, since unknown).
   */
  snapshot(entries) {
    const listed = new Set();
    this.pending = new Set(); // each factory rendered once, at the end
    for (const data of entries) {
      const entry = presenceEntry(data);
      if (!entry) continue;
      listed.add(entry.username.toLowerCase());
      this._applyPresence(entry);
      if (data.status && typeof data.status === "object") this.status(data.status, { live: false });
    }
    for (const [key, factory] of this.factories) {
      if (!listed.has(key)) this._setPresence(factory, { online: false, since: null });
    }
    const pending = this.pending;
    this.pending = null;
    for (const factory of pending) this._render(factory);
    this.presenceKnown = true;
    this._changed();
  }

  /** A PRESENCE_UPDATE's `d`, applied if it is the latest. */
  presence(data) {
    const entry = presenceEntry(data);
    if (entry && this._applyPresence(entry)) this._changed();
  }

  /** True if `entry` was the latest for its factory, and so applied. */
  _applyPresence(entry) {
    const factory = this._ensure(entry.username);
    if (!factory || !supersedes(factory, entry)) return false;
    this._setPresence(factory, entry);
    return true;
  }

  /** A status dispatch's `d` (`{id, from, target, payload, ts}`), live or from the snapshot. */
  status(d, { live = true } = {}) {
    const sender = d?.from?.username;
    if (typeof sender !== "string") return;
    const factory = this._ensure(sender);
    if (!factory) return;
    const ts = Number.isFinite(Number(d.ts)) ? Number(d.ts) : serverClock.now();
    if (factory.status && ts < factory.status.ts) return; // the snapshot's is older than one seen live
    const first = factory.status === null;
    factory.status = { payload: asReadings(d.payload), ts };
    factory.updates += 1;
    factory.row.dataset.updates = String(factory.updates);
    if (this.pending) this.pending.add(factory);
    else if (first) this._render(factory); // the status's age appears
    else {
      this._renderReadings(factory);
      this._renderTimes(factory, serverClock.now());
    }
    if (first && live) this.handlers.onFirstStatus?.(factory.name);
  }

  select(name) {
    const chosen = this.get(name);
    this.selected = chosen ? chosen.name : null;
    for (const factory of this.factories.values()) {
      factory.row.classList.toggle("selected", factory === chosen);
    }
  }

  /** Once a second: the relative times, and the scroll hint (statuses may widen the table). */
  tick() {
    const now = serverClock.now();
    for (const factory of this.factories.values()) this._renderTimes(factory, now);
    this.updateScrollHint();
  }

  /** Show the sideways-scroll hint only while the table is wider than its box. */
  updateScrollHint() {
    const box = this.elements.scroll;
    const overflowing = box.scrollWidth > box.clientWidth + 1;
    box.classList.toggle("overflowing", overflowing);
    this.elements.scrollHint.hidden = !overflowing;
  }

  _changed() {
    this.updateScrollHint();
    this.handlers.onChange?.();
  }

  _setPresence(factory, { online, since }) {
    const before = { online: factory.online, since: factory.since };
    if (before.online === online && before.since === since) return;
    factory.online = online;
    factory.since = since;
    if (this.pending) this.pending.add(factory);
    else this._render(factory);
    if (before.online !== null && before.online !== online) this.handlers.onPresenceChange?.(factory, before);
  }

  /** The factory's record, created with its row and target option; null past the limit. */
  _ensure(name) {
    const existing = this.get(name);
    if (existing) return existing;
    if (this.factories.size >= FACTORY_LIMIT) {
      this.elements.full.textContent = `Only the first ${FACTORY_LIMIT.toLocaleString("en")} factories are shown.`;
      this.elements.full.hidden = false;
      return null;
    }
    const row = document.createElement("tr");
    row.dataset.factory = name;
    row.tabIndex = 0;
    row.addEventListener("click", () => this.handlers.onSelect?.(name));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") this.handlers.onSelect?.(name);
    });
    const factory = {
      name,
      online: this.presenceKnown ? false : null, // after a snapshot, not listed means not online
      since: null,
      disabled: false,
      status: null,
      updates: 0,
      row,
      cells: { name: document.createElement("th"), connection: document.createElement("td"), readings: document.createElement("td") },
      option: document.createElement("option"),
    };
    factory.cells.name.scope = "row";
    factory.cells.connection.className = "connection-cell";
    factory.cells.readings.className = "readings-cell";
    row.append(factory.cells.name, factory.cells.connection, factory.cells.readings);
    this.factories.set(name.toLowerCase(), factory);
    insertSorted(this.elements.body, row, name, (child) => child.dataset.factory);
    factory.option.value = name;
    factory.option.dataset.factory = name;
    insertSorted(this.elements.targets, factory.option, name, (option) => option.value || null);
    this.elements.empty.hidden = true;
    this._renderName(factory);
    if (this.pending) this.pending.add(factory);
    else this._render(factory);
    return factory;
  }

  _render(factory) {
    this._renderConnection(factory);
    this._renderReadings(factory);
    this._renderTarget(factory);
  }

  _renderName(factory) {
    const cell = factory.cells.name;
    cell.replaceChildren(factory.name);
    if (factory.disabled) cell.append(" ", span("tag", "account disabled"));
  }

  /** Presence (word, since when), then the age of the latest status. */
  _renderConnection(factory) {
    const presence = presenceOf(factory);
    const stale = presence === Presence.OFFLINE && factory.status !== null;
    factory.row.dataset.presence = presence;
    factory.row.dataset.stale = String(stale);
    factory.row.classList.toggle("offline", presence === Presence.OFFLINE);
    factory.row.classList.toggle("stale", stale);
    const state = span("presence-state");
    state.dataset.key = "presence";
    state.textContent = PRESENCE_WORDS[presence];
    const line = span("presence-line");
    line.append(span("dot"), state);
    const since = span("presence-since");
    since.dataset.key = "since";
    const age = span("status-age"); // nothing before the first status: the readings say so
    if (factory.status !== null) {
      const value = span("age");
      value.dataset.key = "last-seen";
      age.append("status ", value);
    }
    line.firstChild.setAttribute("aria-hidden", "true");
    factory.cells.connection.replaceChildren(line, since, age);
    factory.sinceElement = since;
    factory.ageElement = age.querySelector('[data-key="last-seen"]');
    this._renderTimes(factory, serverClock.now());
  }

  _renderTimes(factory, now) {
    const since = factory.sinceElement;
    if (factory.since === null) {
      const text = factory.online === false ? "not seen lately" : "";
      if (since.textContent !== text) since.replaceChildren(text);
    } else {
      const text = `for ${elapsed(now - factory.since)}`;
      const time = since.firstElementChild;
      if (time?.textContent !== text) since.replaceChildren(timeElement(localTime(factory.since), text));
    }
    const age = factory.ageElement;
    if (age && factory.status) {
      const text = `${elapsed(now - factory.status.ts)} ago`;
      if (age.textContent !== text) {
        age.textContent = text;
        age.title = dateAndTime(new Date(localTime(factory.status.ts)));
      }
      const late = factory.online !== false && now - factory.status.ts >= LATE_AFTER_SECONDS * 1000;
      factory.row.classList.toggle("late", late);
    }
  }

  _renderReadings(factory) {
    const cell = factory.cells.readings;
    if (factory.status === null) {
      cell.replaceChildren(span("hint", "no status received yet"));
      factory.values = null;
      return;
    }
    const { payload } = factory.status;
    const keys = orderedKeys(payload);
    const shape = `${factory.online === false}|${keys.join("\u0000")}`;
    if (factory.values && factory.shape === shape) {
      // The same keys as the last status (the usual case): only the values change.
      for (const key of keys) {
        const text = formatValue(payload[key]);
        const value = factory.values.get(key);
        if (value.textContent !== text) value.textContent = text;
      }
      return;
    }
    const readings = readingsList(payload);
    factory.shape = shape;
    factory.values = new Map(Array.from(readings.querySelectorAll("dd"), (value) => [value.dataset.key, value]));
    cell.replaceChildren(readings);
    if (factory.online === false) {
      const note = document.createElement("p");
      note.className = "stale-note";
      note.append(span("tag stale-tag", "stale"), " last known readings: the factory is offline");
      cell.prepend(note);
    }
    factory.row.classList.toggle("selected", this.selected === factory.name);
  }

  _renderTarget(factory) {
    const presence = presenceOf(factory);
    factory.option.textContent = presence === Presence.OFFLINE ? `${factory.name} (offline)` : factory.name;
    factory.option.dataset.presence = presence;
  }
}

/** Insert `element` before the first child whose key sorts after `name` (children without a key stay first). */
function insertSorted(parent, element, name, keyOf) {
  const last = parent.lastElementChild;
  if (last === null || (keyOf(last) ?? "") < name) {
    parent.append(element); // the snapshot and the accounts come sorted by name: the usual case
    return;
  }
  const after = Array.from(parent.children).find((child) => {
    const key = keyOf(child);
    return key !== null && key !== undefined && key > name;
  });
  parent.insertBefore(element, after ?? null);
}

// Human words for machine data: the status keys factory-bridge documents, command
// descriptions, short ids, times, and messages from the auth service written as sentences.

/** The status keys of `factory-bridge` (simulated and Modbus machines), in display order. */
export const STATUS_LABELS = Object.freeze({
  state: "State",
  spindle_rpm: "Spindle (rpm)",
  target_rpm: "Target (rpm)",
  temperature_c: "Temperature (°C)",
});

const KNOWN_KEYS = Object.keys(STATUS_LABELS);
const SHORT_ID_LENGTH = 8;

/** The label of a status key: the documented ones with their unit, others as they are. */
export function labelOf(key) {
  return Object.hasOwn(STATUS_LABELS, key) ? STATUS_LABELS[key] : key;
}

/** A status payload's keys: the documented ones first, in their order, then the others. */
export function orderedKeys(payload) {
  const keys = Object.keys(payload);
  return [
    ...KNOWN_KEYS.filter((key) => keys.includes(key)),
    ...keys.filter((key) => !KNOWN_KEYS.includes(key)),
  ];
}

export function formatValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** `State running, Target (rpm) 1200` for an object; the value itself otherwise. */
export function describePayload(payload) {
  if (payload === null || payload === undefined) return "";
  if (typeof payload !== "object" || Array.isArray(payload)) return formatValue(payload);
  return orderedKeys(payload)
    .map((key) => `${labelOf(key)} ${formatValue(payload[key])}`)
    .join(", ");
}

/** A command as an operator would say it: `start at 1200 rpm`, `stop`, `set speed to 900 rpm`. */
export function describeCommand(payload) {
  const { action, rpm, ...rest } = payload ?? {};
  let text;
  if (action === "start") text = rpm === undefined ? "start" : `start at ${rpm} rpm`;
  else if (action === "set_speed") text = `set speed to ${rpm} rpm`;
  else text = String(action ?? "command");
  const extra = describePayload(rest);
  return extra ? `${text} (${extra})` : text;
}

/** The first characters of a long id (`cmd-28d2…`); the whole id goes in a tooltip. */
export function shortId(id) {
  return id.length <= SHORT_ID_LENGTH + 2 ? id : `${id.slice(0, SHORT_ID_LENGTH)}…`;
}

/** An element showing a short id, the full one on hover. */
export function idElement(id) {
  const element = document.createElement("abbr");
  element.className = "id";
  element.title = id;
  element.textContent = shortId(id);
  return element;
}

/** A server's `detail` as a sentence: capital first letter, final full stop. */
export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

const SECOND_MS = 1000;
const MINUTE_S = 60;
const HOUR_S = 60 * MINUTE_S;
const DAY_S = 24 * HOUR_S;

/** How long, for people: `12 s`, `5 min`, `3 h 05 min`, `2 d 4 h`; never negative. */
export function elapsed(ms) {
  const seconds = Math.max(0, Math.floor(ms / SECOND_MS));
  if (seconds < MINUTE_S) return `${seconds} s`;
  if (seconds < HOUR_S) return `${Math.floor(seconds / MINUTE_S)} min`;
  if (seconds < DAY_S) {
    const minutes = String(Math.floor((seconds % HOUR_S) / MINUTE_S)).padStart(2, "0");
    return `${Math.floor(seconds / HOUR_S)} h ${minutes} min`;
  }
  return `${Math.floor(seconds / DAY_S)} d ${Math.floor((seconds % DAY_S) / HOUR_S)} h`;
}

// One formatter each, made once: `toLocaleString` builds a new one on every call, which
// a table of a few thousand factories notices.
const TIME_OF_DAY = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const DATE_AND_TIME = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "medium" });

/** `14:05:03`: a time of day on this browser's clock (24 h). */
export function clock(date = new Date()) {
  return TIME_OF_DAY.format(date);
}

/** The date and time in full, for a tooltip. */
export function dateAndTime(date) {
  return DATE_AND_TIME.format(date);
}

/** A `<time>` element: `text` shown, the full date and time on hover, `datetime` for machines. */
export function timeElement(localMs, text) {
  const element = document.createElement("time");
  const date = new Date(localMs);
  element.dateTime = date.toISOString();
  element.title = dateAndTime(date);
  element.textContent = text;
  return element;
}

// Human words for machine data: the status keys factory-bridge documents, command
// descriptions, short ids, and messages from the auth service written as sentences.

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

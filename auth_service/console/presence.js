// Which factories are online, and since when (the relay's presence). Three sources feed it:
// the factory accounts (`GET /factories`, presence unknown), READY's snapshot
// (`factories`: every factory online now or seen lately) and `PRESENCE_UPDATE` events.
// An update may repeat what the snapshot showed, and after a reconnect a snapshot may be
// older than an update already seen: per factory, the entry with the latest `since` wins.

/** What is known of a factory's presence. `online` null: nothing known (yet). */
export const Presence = Object.freeze({
  ONLINE: "online",
  OFFLINE: "offline",
  UNKNOWN: "unknown",
});

/** `{username, online, since}` from the relay, checked; null for anything else. */
export function presenceEntry(data) {
  if (data === null || typeof data !== "object") return null;
  if (typeof data.username !== "string" || typeof data.online !== "boolean") return null;
  const since = Number(data.since);
  return { username: data.username, online: data.online, since: Number.isFinite(since) ? since : null };
}

/**
 * Whether `incoming` replaces what is known (`current`: `{online, since}`): when nothing is
 * known, when the current entry has no `since`, or when `incoming` is at least as recent.
 */
export function supersedes(current, incoming) {
  if (current.online === null || current.since === null) return true;
  if (incoming.since === null) return false;
  return incoming.since >= current.since;
}

/** The presence as one word, for `data-presence` and the table. */
export function presenceOf({ online }) {
  if (online === null) return Presence.UNKNOWN;
  return online ? Presence.ONLINE : Presence.OFFLINE;
}

/** The factories the snapshot does not list: not online now, nor seen lately. */
export function absentFrom(snapshot, names) {
  const listed = new Set(snapshot.map((entry) => entry.username.toLowerCase()));
  return names.filter((name) => !listed.has(name.toLowerCase()));
}

// What became of each command this console sent: sent → acknowledged / rejected (the
// factory's COMMAND_ACK / COMMAND_REJECTED, matched by `payload.command_id`) / expired (no
// answer by its `expires_at`, send time + `ttl_ms`) / delivery failed (the relay's
// DELIVERY_FAILED naming its id). Shown as a list under the command form, newest first.

import { clock, describeCommand, elapsed, idElement } from "./labels.js";

export const CommandState = Object.freeze({
  SENT: "sent",
  ACKNOWLEDGED: "acknowledged",
  REJECTED: "rejected",
  EXPIRED: "expired",
  FAILED: "delivery-failed",
});

/** The console's default `ttl_ms`, in seconds (the relay's own default, `COMMAND_TTL_MS`). */
export const DEFAULT_TTL_SECONDS = 30;
/** The largest `ttl_ms` the console sends, in seconds (the relay's default `COMMAND_TTL_MAX_MS`). */
export const MAX_TTL_SECONDS = 3600;
/**
 * A factory may act on a command up to its `expires_at`; its answer then still has to
 * travel back. The console declares "expired" this long after `expires_at`, and an
 * answer that comes later still replaces it.
 */
export const ANSWER_GRACE_MS = 1000;
/** Commands tracked (and listed); older ones are forgotten. */
export const COMMANDS_KEPT = 100;

/**
 * What a DELIVERY_FAILED reason means for the command: `local_only` went to the factories
 * on the operator's own relay replica (if any) and nowhere else; `publish_failed` may
 * still have been taken by Redis; the others reached no one.
 */
export function failureMeaning(reason) {
  if (reason === "local_only") return "reached only factories on this relay replica, if any";
  if (reason === "publish_failed") return "it may not have reached the factory";
  return "executed nowhere";
}

function div(className, ...parts) {
  const element = document.createElement("div");
  element.className = className;
  element.append(...parts);
  return element;
}

/** `a, b and c` */
function names(list) {
  if (list.length <= 1) return list.join("");
  return `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

export class CommandTracker {
  constructor(list) {
    this.list = list; // the <ol> of commands, newest first
    this.commands = new Map(); // id → command, oldest first
  }

  get(id) {
    return this.commands.get(id);
  }

  clear() {
    this.commands.clear();
    this.list.replaceChildren();
  }

  /** A command just sent (op 4 went out); `targetOffline`: its target was offline then. */
  sent({ id, payload, target, ttlMs, targetOffline, now = Date.now() }) {
    const command = {
      id,
      payload,
      target,
      ttlMs,
      targetOffline,
      sentAt: now,
      expiresAt: now + ttlMs,
      state: CommandState.SENT,
      open: true, // answers still expected (until expires_at + the grace)
      acked: [], // senders
      rejected: [], // {sender, reason}
      failure: null,
      missedWhileAway: false,
      logEntry: null,
      item: document.createElement("li"),
    };
    command.item.className = "command-item";
    command.item.dataset.commandId = id;
    this.commands.set(id, command);
    this.list.prepend(command.item);
    while (this.commands.size > COMMANDS_KEPT) {
      const [oldest] = this.commands.values();
      oldest.item.remove();
      this.commands.delete(oldest.id);
    }
    this._build(command);
    this._update(command, now);
    return command;
  }

  /** A factory's COMMAND_ACK / COMMAND_REJECTED for one of ours; undefined if not ours. */
  answered(id, { acknowledged, sender, reason }) {
    const command = this.commands.get(id);
    if (!command || command.state === CommandState.FAILED) return command;
    if (acknowledged) command.acked.push(sender);
    else command.rejected.push({ sender, reason: reason ?? "no reason given" });
    command.state = command.acked.length ? CommandState.ACKNOWLEDGED : CommandState.REJECTED;
    if (command.target) command.open = false; // its one factory answered
    this._update(command);
    return command;
  }

  /** The relay's DELIVERY_FAILED: the command was relayed to nobody. */
  deliveryFailed(id, reason) {
    const command = this.commands.get(id);
    if (!command) return undefined;
    command.state = CommandState.FAILED;
    command.failure = reason ?? "no reason given";
    command.open = false;
    this._update(command);
    return command;
  }

  /** The relay connection dropped: answers to open commands may be missed meanwhile. */
  away() {
    for (const command of this.commands.values()) if (command.open) command.missedWhileAway = true;
  }

  /** Once a second: countdowns; returns the commands that have just expired unanswered. */
  tick(now = Date.now()) {
    const expired = [];
    for (const command of this.commands.values()) {
      if (!command.open) continue;
      if (now >= command.expiresAt + ANSWER_GRACE_MS) {
        command.open = false;
        if (command.state === CommandState.SENT) {
          command.state = CommandState.EXPIRED;
          expired.push(command);
        }
      }
      this._update(command, now);
    }
    return expired;
  }

  /** What happened, as a sentence. */
  stateText(command) {
    const everyone = command.target === null;
    switch (command.state) {
      case CommandState.SENT:
        if (command.targetOffline) {
          return `Waiting: ${command.target} was offline when sent; it gets the command if it is back by ${clock(new Date(command.expiresAt))}`;
        }
        return everyone ? "Sent to every factory, waiting for answers" : "Sent, waiting for the answer";
      case CommandState.EXPIRED: {
        const missed = command.missedWhileAway
          ? " (the console was reconnecting meanwhile: an answer may have been missed)"
          : "";
        return `Expired: no answer by ${clock(new Date(command.expiresAt))}${missed}`;
      }
      case CommandState.FAILED:
        return `Delivery failed (${command.failure}): ${failureMeaning(command.failure)}`;
      default: {
        const parts = [];
        if (command.acked.length) parts.push(`Acknowledged by ${names(command.acked)}`);
        for (const { sender, reason } of command.rejected) parts.push(`Rejected by ${sender}: ${reason}`);
        return parts.join("; ");
      }
    }
  }

  /** Build the command's list item once; `_update` keeps its texts current. */
  _build(command) {
    const target = command.target ?? "all factories";
    const what = div("command-what", `${describeCommand(command.payload)} → ${target} `, idElement(command.id));
    command.stateLine = div("command-state");
    command.stateLine.dataset.key = "state";
    command.timingLine = div("command-when");
    command.timingLine.dataset.key = "expiry";
    command.item.append(what, command.stateLine, command.timingLine);
  }

  _update(command, now = Date.now()) {
    const sent = `sent ${clock(new Date(command.sentAt))}, expires after ${elapsed(command.ttlMs)} at ${clock(new Date(command.expiresAt))}`;
    const timing = command.open ? `${sent} (in ${elapsed(command.expiresAt - now + 999)})` : sent;
    const state = this.stateText(command);
    command.item.dataset.state = command.state;
    if (command.stateLine.textContent !== state) command.stateLine.textContent = state;
    if (command.timingLine.textContent !== timing) command.timingLine.textContent = timing;
  }
}

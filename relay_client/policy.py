"""What a client does after each close code: the SPEC's close-code table, as data."""

from __future__ import annotations

from enum import Enum

from shared.protocol import CloseCode


class Reconnect(Enum):
    WITH_BACKOFF = "reconnect with backoff"
    AT_ONCE = "reconnect at once"
    WITH_NEW_TOKEN = "get a new token, then reconnect"  # noqa: S105 — not a secret
    NEVER = "do not reconnect: fix the client"


_POLICY = {
    CloseCode.UNKNOWN_ERROR: Reconnect.WITH_BACKOFF,
    CloseCode.UNKNOWN_OPCODE: Reconnect.NEVER,
    CloseCode.DECODE_ERROR: Reconnect.NEVER,
    CloseCode.NOT_AUTHENTICATED: Reconnect.WITH_BACKOFF,
    CloseCode.AUTHENTICATION_FAILED: Reconnect.WITH_NEW_TOKEN,
    CloseCode.ALREADY_AUTHENTICATED: Reconnect.NEVER,
    CloseCode.RATE_LIMITED: Reconnect.WITH_BACKOFF,
    CloseCode.SESSION_TIMED_OUT: Reconnect.WITH_BACKOFF,
    CloseCode.NOT_AUTHORIZED: Reconnect.NEVER,
    CloseCode.TOO_SLOW: Reconnect.WITH_BACKOFF,
    CloseCode.MESSAGE_TOO_BIG: Reconnect.NEVER,
    CloseCode.SERVICE_RESTART: Reconnect.AT_ONCE,
}


def reconnect_policy(code: int | None) -> Reconnect:
    """`None` (no close frame: the network failed) and unknown codes reconnect with backoff."""
    if code is None:
        return Reconnect.WITH_BACKOFF
    try:
        return _POLICY[CloseCode(code)]
    except ValueError:
        return Reconnect.WITH_BACKOFF

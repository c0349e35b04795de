"""Presence on the wire: its PRESENCE_UPDATE broker messages, what it hears on the observer
channels, and the store for this deployment (Redis, or in process without `REDIS_URL`)."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from relay_service import frames
from relay_service.broker.links import publish_command
from relay_service.channels import Channels
from relay_service.config import RelaySettings
from relay_service.frames import Dispatch
from relay_service.presence.keys import PresenceKeys
from relay_service.presence.memory import MemoryStore
from relay_service.presence.redis import RedisStore
from relay_service.presence.store import PresenceStore
from relay_service.presence.tracker import Presence
from shared.clock import now_ms
from shared.protocol import Op
from shared.redis_connect import RedisClient

PRESENCE_UPDATE = "PRESENCE_UPDATE"
SNAPSHOT_SHARE = 2
"""READY's statuses take at most this fraction (1/2) of `SEND_QUEUE_LIMIT_BYTES`: READY
must fit a session's output bound, with room for what follows it."""
_PRESENCE_BODY = b'"t":"PRESENCE_UPDATE",'
_STATUS_HEAD = b'"d":'
"""A status's body is `"d":{…}}`: its `d` is the body without this head and the last `}`."""


def presence_for(
    settings: RelaySettings,
    client: RedisClient | None,
    channels: Channels,
    *,
    publish: Callable[[str, bytes], None],
    deliver_locally: Callable[[str, bytes], None],
) -> Presence:
    """The tracker on Redis (`client`), or in process, publishing through `publish`;
    `deliver_locally(channel, message)` hands a message to this replica's sessions only."""
    store: PresenceStore
    if client is None:
        store = MemoryStore(publish, channels.observer_shard)
    else:
        store = RedisStore(
            client,
            PresenceKeys(settings.redis_prefix),
            channel_of=channels.observer_shard,
            timeout_seconds=settings.redis_timeout_seconds,
            retention_seconds=settings.presence_retention_seconds,
            ttl_seconds=settings.presence_ttl_seconds,
            publish_command=publish_command(client),
        )

    def notify(username: str, online: bool, since: int) -> None:
        deliver_locally(channels.observer_shard(username), announcement(username, online, since))

    return Presence(
        store,
        grace_ms=settings.presence_grace_ms,
        ttl_seconds=settings.presence_ttl_seconds,
        retention_seconds=settings.presence_retention_seconds,
        timeout_seconds=settings.redis_timeout_seconds,
        snapshot_status_bytes=settings.send_queue_limit_bytes // SNAPSHOT_SHARE,
        announce=announcement,
        notify=notify,
    )


def announcement(username: str, online: bool, since: int) -> bytes:
    """The PRESENCE_UPDATE broker message (format 2, named after the factory), stamped now."""
    data = {"username": username, "online": online, "since": since}
    body = frames.dispatch_body(Op.EVENT, PRESENCE_UPDATE, data)
    return frames.pack(Dispatch(Op.EVENT, now_ms(), body, username))


def status_data(dispatch: Dispatch) -> bytes | None:
    """A status's `d` exactly as delivered (raw JSON), or None if it is not a status."""
    body = dispatch.body
    if dispatch.op != Op.STATUS or not body.startswith(_STATUS_HEAD):
        return None
    return body[len(_STATUS_HEAD) : -1]


def heard(presence: Presence, dispatch: Dispatch) -> None:
    """The mirror's feed: every message this replica hears on the observer channels."""
    status = status_data(dispatch)
    if status is not None:
        presence.heard_status(dispatch.name, status, dispatch.ts_ms)
    elif dispatch.op == Op.EVENT and dispatch.body.startswith(_PRESENCE_BODY):
        data = orjson.loads(b"{" + dispatch.body)["d"]
        presence.heard_presence(data["username"], data["online"], data["since"])

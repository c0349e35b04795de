"""The relay's HTTP endpoints, answered before any WebSocket handshake.

`/healthz` (alive), `/readyz` (ready: not draining and the broker reachable) and
`/metrics` (Prometheus); only `/ws` goes on to the handshake, anything else is 404.
"""

from __future__ import annotations

import http
from collections.abc import Callable
from contextlib import suppress

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay_service.connection import RelayConnection
from relay_service.relay import Relay

WEBSOCKET_PATH = "/ws"
NEAR_CAP = 0.95
"""Not ready from this share of `MAX_CONNECTIONS` on: the balancer sends new sessions to
other replicas before this one refuses them (503 at the handshake, at the cap itself)."""

HttpRouter = Callable[[ServerConnection, Request], Response | None]


def http_router(relay: Relay) -> HttpRouter:
    """websockets' `process_request`: answer the HTTP endpoints, pass `/ws` through."""

    def route_http(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == WEBSOCKET_PATH:
            assert isinstance(connection, RelayConnection)
            refusal = relay.admission.admit(connection, request)
            return None if refusal is None else _json(connection, refusal.status, refusal.detail)
        if path == "/healthz":
            return _json(connection, http.HTTPStatus.OK, {"status": "ok"})
        if path == "/readyz":
            return _readiness(connection, relay)
        if path == "/metrics":
            response = connection.respond(http.HTTPStatus.OK, "")
            response.body = generate_latest()
            _set_content_type(response.headers, CONTENT_TYPE_LATEST)
            return response
        return _json(connection, http.HTTPStatus.NOT_FOUND, "not found")

    return route_http


def _readiness(connection: ServerConnection, relay: Relay) -> Response:
    unavailable = http.HTTPStatus.SERVICE_UNAVAILABLE
    if relay.draining:
        return _json(connection, unavailable, "shutting down")
    if not relay.broker.ready:
        return _json(connection, unavailable, "broker unreachable")
    if len(relay.admission) >= relay.admission.total * NEAR_CAP:
        return _json(connection, unavailable, "near its connection cap")
    if not relay.verifier.has_keys:
        return _json(connection, unavailable, "no token verification keys yet")
    return _json(connection, http.HTTPStatus.OK, {"status": "ready"})


def _json(connection: ServerConnection, status: http.HTTPStatus, body: object) -> Response:
    """A JSON response; a bare string is an error's `{"detail": …}`."""
    response = connection.respond(status, "")
    response.body = orjson.dumps({"detail": body} if isinstance(body, str) else body)
    _set_content_type(response.headers, "application/json")
    return response


def _set_content_type(headers: Headers, value: str) -> None:
    with suppress(KeyError):
        del headers["Content-Type"]
    headers["Content-Type"] = value
    with suppress(KeyError):
        del headers["Content-Length"]

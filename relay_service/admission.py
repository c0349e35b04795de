"""Who may open a WebSocket here: caps per client address and per replica, at the handshake.

A handshake past `MAX_CONNECTIONS_PER_ADDRESS` open connections from one client address is
refused with 429, and past the replica's connection cap with 503, before any session
exists: a client cannot make the replica hold more sockets than these (nor run it out of
file descriptors, which would cut off `/readyz` and `/metrics` too). The client address is
the peer's, or, when the peer is a trusted proxy (`FORWARDED_ALLOW_IPS`), the first
address in `X-Forwarded-For` that is not itself a trusted proxy, read from the right.
"""

from __future__ import annotations

import http
import ipaddress
import resource
from collections.abc import Sequence
from dataclasses import dataclass

from websockets.http11 import Request

from relay_service.connection import RelayConnection

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FD_RESERVE = 256
"""File descriptors kept free of WebSockets: `/readyz`, `/metrics`, Redis, logs."""


def connection_cap(configured: int) -> int:
    """`MAX_CONNECTIONS`, lowered to fit under the open-file limit with `FD_RESERVE` spare."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - FD_RESERVE))


@dataclass(frozen=True, slots=True)
class Refusal:
    status: http.HTTPStatus
    detail: str


class Admission:
    def __init__(
        self, *, per_address: int, total: int, trusted_proxies: Sequence[IpNetwork]
    ) -> None:
        self.per_address = per_address
        self.total = total
        self._trusted = tuple(trusted_proxies)
        self._open: dict[str, int] = {}
        self._connections: set[RelayConnection] = set()
        self.released = 0
        """Connections closed since start (a running total)."""

    def __len__(self) -> int:
        """Open WebSocket connections, identified or not."""
        return len(self._connections)

    def connections(self) -> list[RelayConnection]:
        """Every admitted connection whose socket is still open, closing ones included."""
        return list(self._connections)

    def admit(self, connection: RelayConnection, request: Request) -> Refusal | None:
        """Count the connection against its address and the replica, or say why not.

        An admitted connection calls `release` once, when its socket closes.
        """
        if len(self._connections) >= self.total:
            return Refusal(http.HTTPStatus.SERVICE_UNAVAILABLE, "replica at its connection cap")
        address = self.client_address(connection, request)
        if self._open.get(address, 0) >= self.per_address:
            return Refusal(http.HTTPStatus.TOO_MANY_REQUESTS, "too many connections from here")
        self._open[address] = self._open.get(address, 0) + 1
        self._connections.add(connection)
        connection.client_address = address
        connection.admission = self
        return None

    def client_address(self, connection: RelayConnection, request: Request) -> str:
        peer = str(connection.remote_address[0]) if connection.remote_address else "unknown"
        if not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:  # the default: no proxy, nothing to parse per connection
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def release(self, connection: RelayConnection) -> None:
        self._connections.discard(connection)
        self.released += 1
        address = connection.client_address
        remaining = self._open[address] - 1
        if remaining:
            self._open[address] = remaining
        else:
            del self._open[address]

"""Prometheus metrics of the relay. Labels are bounded sets: never a user or session id."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.identity import UserType
from shared.protocol import CLIENT_OPS, SERVER_OPS

IDENTIFIES_IN_FLIGHT = Gauge(
    "relay_identifies_in_flight",
    "Identifies being served (token, revocation lookup, join, READY): at most"
    " MAX_CONCURRENT_IDENTIFIES",
)
IDENTIFIES_WAITING = Gauge(
    "relay_identifies_waiting", "Identifies waiting for a slot (past MAX_CONCURRENT_IDENTIFIES)"
)
CLOSES = Counter("relay_closes_total", "Sessions closed by the server, by close code", ["code"])
DELIVERY_LATENCY = Histogram(
    "relay_delivery_latency_seconds",
    "From a message's arrival at any replica to its fan-out on this one",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BROKER_UP = Gauge("relay_broker_up", "1 while the broker connection is up and subscribed")
BROKER_RECONNECTS = Counter("relay_broker_reconnects_total", "Broker reconnections after a loss")
BROKER_DROPPED = Counter(
    "relay_broker_dropped_messages_total",
    "Messages dropped between replicas: not published (queue_full, too_old, publish_failed,"
    " unreachable), heard from the broker too late to deliver (late), or a message to"
    " factories heard after its expires_at (expired)",
    ["reason"],
)
DROP_REASONS = ("queue_full", "too_old", "publish_failed", "unreachable", "late", "expired")
DROPPED: dict[str, Counter] = {
    reason: BROKER_DROPPED.labels(reason=reason) for reason in DROP_REASONS
}
"""One child per reason, made up front: each is exported (at 0) before its first drop."""
BROKER_LOCAL_ONLY = Counter(
    "relay_broker_local_only_messages_total",
    "Messages sent while the broker was unreachable, handed only to this replica's own"
    " sessions (never published later)",
)
BROKER_PUBLISH_QUEUE_BYTES = Gauge(
    "relay_broker_publish_queue_bytes", "Bytes of messages waiting to be published to the broker"
)
BROKER_BAD_MESSAGES = Counter(
    "relay_broker_bad_messages_total",
    "Broker messages skipped: malformed, of an unknown format version, or failing their handler",
    ["reason"],
)


class FrameCounts(Collector):
    """`relay_frames_total{op,direction}` kept in plain integers and read at each scrape.

    Every frame is counted, heartbeats and their ACKs included: an addition to a dict
    entry costs a fraction of prometheus_client's counter (a lock, a check and three calls
    per increment), on the path that runs most often. One event loop thread adds; a
    scrape reads."""

    def __init__(self) -> None:
        self.received: dict[int, int] = dict.fromkeys(CLIENT_OPS, 0)
        self.sent: dict[int, int] = dict.fromkeys(SERVER_OPS, 0)

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for direction, counts in (("in", self.received), ("out", self.sent)):
            for op, count in counts.items():
                family.add_metric([str(int(op)), direction], count)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "relay_frames", "WebSocket frames by op and direction", labels=["op", "direction"]
        )


FRAME_COUNTS = FrameCounts()
REGISTRY.register(FRAME_COUNTS)
FRAMES_IN = FRAME_COUNTS.received
"""Frames received by op: `FRAMES_IN[op] += 1`."""
FRAMES_OUT = FRAME_COUNTS.sent
"""Frames sent by op: `FRAMES_OUT[op] += n`."""


class SessionCounts(Collector):
    """`relay_sockets` and `relay_connections{type}` kept in plain integers and read at each
    scrape, like `FrameCounts`: a socket and a session are counted on every Identify's path,
    where prometheus_client's gauge cost a lock and three calls per change (and a `labels()`
    lookup for the user type). Every user type is exported from the start, at 0."""

    def __init__(self) -> None:
        self.sockets = 0
        """Open WebSocket connections, identified or not."""
        self.identified: dict[UserType, int] = dict.fromkeys(UserType, 0)
        """Identified sessions by user type."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sockets, identified = self._families()
        sockets.add_metric([], self.sockets)
        for user_type, count in self.identified.items():
            identified.add_metric([user_type.value], count)
        yield sockets
        yield identified

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("relay_sockets", "Open WebSocket connections, identified or not"),
            GaugeMetricFamily(
                "relay_connections",
                "Identified WebSocket sessions on this replica",
                labels=["type"],
            ),
        )


SESSION_COUNTS = SessionCounts()
REGISTRY.register(SESSION_COUNTS)
STREAM_RESUMES = Counter(
    "relay_stream_resumes_total",
    "Factories' resumes per stream: resumed, or started afresh (epoch changed, history trimmed)",
    ["result"],
)
STREAM_REPLAYED = Counter(
    "relay_stream_replayed_messages_total",
    "Messages replayed from the command streams: at resume, and filling a gap after a"
    " broker reconnect",
    ["reason"],
)

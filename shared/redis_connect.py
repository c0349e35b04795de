"""`REDIS_URL`: the one parser of its forms and the one builder of both services' clients.

Forms (a bad one stops a service at start with one line naming `REDIS_URL`, never the
password):

- `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path?db=N`:
  one server, or a managed endpoint that fails over behind one address;
- `redis+sentinel://[[user]:password@]host:port[,host:port…]/<master name>[/db]`: Redis
  Sentinel. The sentinels (port 26379 when omitted) name the current master; every
  connection asks them when it (re)connects, so a failover is followed without a restart,
  and a connection that meets a demoted master (`READONLY`) is dropped and reopened on the
  new one: nothing is ever written to a replica. The password is the data nodes'; the
  sentinels are asked without one.
- `redis+cluster://[[user]:password@]host:port[,host:port…]`: Redis Cluster from seed nodes
  (port 6379 when omitted); the client learns the slot map from them and follows it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.connection import parse_url
from redis.exceptions import RedisClusterException, RedisError

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"
SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_DEFAULT_PORT = 26379
CLUSTER_DEFAULT_PORT = 6379
MAX_NODES = 64
"""More sentinels or seed nodes than this in one URL is a mistake, not a deployment."""

RedisClient = Redis | RedisCluster
"""What both services hold: one server or Sentinel's master (`Redis`), or a cluster."""

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a Redis call meets when Redis is down, hung, full or failing over: a cluster's own
errors (no reachable node, a slot not covered) are not `RedisError`s; a timeout is an
`OSError`."""


class Mode(Enum):
    SINGLE = "single"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed `REDIS_URL`. `url` is the original (single server only: redis-py parses it)."""

    mode: Mode
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """Parse any accepted form; `ValueError` says what is wrong without quoting a secret."""
    if url.startswith(SENTINEL_SCHEME):
        return _parse_multi_node(url, Mode.SENTINEL)
    if url.startswith(CLUSTER_SCHEME):
        return _parse_multi_node(url, Mode.CLUSTER)
    if url.startswith(SINGLE_SCHEMES):
        try:
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError:
            raise ValueError(
                "not a valid redis:// URL (redis://[[user]:password@]host[:port][/db])"
            ) from None
        return RedisTarget(Mode.SINGLE, url)
    raise ValueError(
        "must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
    )


def _parse_multi_node(url: str, mode: Mode) -> RedisTarget:
    scheme = SENTINEL_SCHEME if mode is Mode.SENTINEL else CLUSTER_SCHEME
    rest = url.removeprefix(scheme)
    if "?" in rest or "#" in rest:
        raise ValueError(f"{scheme} takes no query or fragment")
    location, _, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    default_port = SENTINEL_DEFAULT_PORT if mode is Mode.SENTINEL else CLUSTER_DEFAULT_PORT
    nodes = tuple(_node(item, default_port) for item in hosts.split(","))
    if len(nodes) > MAX_NODES:
        raise ValueError(f"at most {MAX_NODES} nodes")
    if mode is Mode.CLUSTER:
        if path not in ("", "0"):
            raise ValueError("redis+cluster:// takes no database (a cluster has only db 0)")
        return RedisTarget(mode, url, nodes, username=username, password=password)
    master, _, db = path.partition("/")
    if not master:
        raise ValueError("redis+sentinel:// needs the master's name: …/<master name>[/db]")
    return RedisTarget(
        mode,
        url,
        nodes,
        master=unquote(master),
        db=_database(db),
        username=username,
        password=password,
    )


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    username, colon, password = userinfo.partition(":")
    return (unquote(username) or None, unquote(password) if colon else None)


def _node(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, bracket, port = item[1:].partition("]")
        port = port.removeprefix(":")
        if not bracket:
            raise ValueError(f"{item!r}: unclosed [")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError("a node without a host (host:port[,host:port…])")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{item!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _database(text: str) -> int:
    if text == "":
        return 0
    if not text.isdigit():
        raise ValueError("the database must be a number (…/<master name>/<db>)")
    return int(text)


# -- clients --------------------------------------------------------------------------

RESP_VERSION = 2
"""The Redis protocol both services speak. redis-py 8 defaults to RESP3, where each pub/sub
message goes through a push handler that formats the whole message into a debug log line
whether or not anything logs it (~20,000 instructions per message heard by a relay); with
RESP2 a message is an ordinary reply. Nothing here needs RESP3 (no client-side caching)."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How a service talks to Redis, whatever the form of `REDIS_URL`.

    `socket_timeout_seconds` None: the service bounds each call itself (`asyncio.timeout`).
    `max_connections` with `pool_wait_seconds`: a caller waits that long for a free
    connection (per node on a cluster, which refuses at once instead of waiting).
    """

    connect_timeout_seconds: float
    retry: Retry
    socket_timeout_seconds: float | None = None
    max_connections: int | None = None
    pool_wait_seconds: float | None = None
    keepalive: bool = False
    health_check_interval: int = 0
    retry_on_error: tuple[type[Exception], ...] = ()
    client_name: str | None = None
    """Shown by `CLIENT LIST` on the data nodes: which process a connection is."""

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "protocol": RESP_VERSION,
            "client_name": self.client_name,
            "socket_timeout": self.socket_timeout_seconds,
            "socket_connect_timeout": self.connect_timeout_seconds,
            "socket_keepalive": self.keepalive,
            "health_check_interval": self.health_check_interval,
            "retry": self.retry,
        }
        if self.retry_on_error:
            kwargs["retry_on_error"] = list(self.retry_on_error)
        return kwargs


class SentinelMaster(Redis):
    """Sentinel's master client: closing it closes its connections to the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master pool, bounded like `BlockingConnectionPool`: callers wait for a
    free connection instead of opening one more."""


def redis_client(url: str, options: ClientOptions) -> RedisClient:
    """The client for `REDIS_URL` (already validated by the settings)."""
    target = parse_redis_url(url)
    if target.mode is Mode.SENTINEL:
        return _sentinel_master(target, options)
    if target.mode is Mode.CLUSTER:
        return _cluster(target, options)
    pool: ConnectionPool
    if options.max_connections is not None and options.pool_wait_seconds is not None:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=options.max_connections,
            timeout=options.pool_wait_seconds,
            **options.connection_kwargs(),
        )
    else:
        pool = ConnectionPool.from_url(url, **options.connection_kwargs())
    return Redis.from_pool(pool)


def _sentinel_master(target: RedisTarget, options: ClientOptions) -> Redis:
    """The master's client: each new connection asks the sentinels where the master is."""
    assert target.master is not None
    # The sentinels are asked with socket timeouts of their own: discovery tries them one
    # after another, and one hung sentinel must not use up the caller's whole timeout.
    sentinel_timeout = options.socket_timeout_seconds or options.connect_timeout_seconds
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.nodes),
        sentinel_kwargs={
            "socket_timeout": sentinel_timeout,
            "socket_connect_timeout": options.connect_timeout_seconds,
        },
    )
    kwargs = options.connection_kwargs()
    kwargs.update(db=target.db, username=target.username, password=target.password)
    if options.max_connections is not None and options.pool_wait_seconds is not None:
        kwargs.update(max_connections=options.max_connections, timeout=options.pool_wait_seconds)
        pool_class: type[SentinelConnectionPool] = BlockingSentinelConnectionPool
    else:
        pool_class = SentinelConnectionPool
    client: Redis = sentinel.master_for(
        target.master, redis_class=SentinelMaster, connection_pool_class=pool_class, **kwargs
    )
    return client


def _cluster(target: RedisTarget, options: ClientOptions) -> RedisCluster:
    kwargs = options.connection_kwargs()
    if options.max_connections is not None:
        kwargs["max_connections"] = options.max_connections
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
        username=target.username,
        password=target.password,
        **kwargs,
    )


def script_sha1(script: str) -> str:
    """The SHA1 Redis names a Lua script by (what EVALSHA takes)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()

"""Redis Sentinel and Redis Cluster for the tests, from `devtools.redis_nodes`.

Started by the tests themselves on free loopback ports, in temporary directories, always
killed on teardown. Skipped with a reason only when `redis-server` is missing (failing
under `CI`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from devtools.redis_nodes import (
    DOWN_AFTER_MS,
    MissingRedisError,
    RedisClusterNodes,
    RedisNodesError,
    SentinelGroup,
)
from tests.services import unavailable

__all__ = ["DOWN_AFTER_MS", "RedisClusterNodes", "SentinelGroup", "redis_cluster", "sentinel_group"]


def sentinel_group(workdir: Path) -> Iterator[SentinelGroup]:
    """For a fixture: a master, a replica and three sentinels, killed afterwards."""
    group = SentinelGroup(workdir)
    try:
        yield _started(group)
    finally:
        group.kill_all()


def redis_cluster(workdir: Path) -> Iterator[RedisClusterNodes]:
    """For a fixture: a started 3-master cluster, killed afterwards whatever happened."""
    cluster = RedisClusterNodes(workdir)
    try:
        yield _started(cluster)
    finally:
        cluster.kill_all()


Nodes = TypeVar("Nodes", SentinelGroup, RedisClusterNodes)


def _started(nodes: Nodes) -> Nodes:
    try:
        nodes.start()
    except MissingRedisError as missing:
        unavailable("redis-server", missing)
    except RedisNodesError as error:
        pytest.fail(str(error))
    return nodes

"""Redis Sentinel and Redis Cluster as real `redis-server` processes on free loopback ports.

For the failover and cluster tests and the pub/sub benchmark: started from Debian's redis
(`redis-server`, `redis-server --sentinel`, `redis-cli --cluster create`) in directories
of their own, without persistence; the caller kills them (`kill_all`) when done.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

START_TIMEOUT = 15.0
MASTER_NAME = "relaymaster"
DOWN_AFTER_MS = 1000
"""Sentinels call the master down after this long without an answer."""
FAILOVER_TIMEOUT_MS = 3000
CLUSTER_MASTERS = 3
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


class RedisNodesError(RuntimeError):
    """A node did not start, or the group or cluster did not form in time."""


class MissingRedisError(RedisNodesError):
    """`redis-server` or `redis-cli` is not installed."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingRedisError(f"{name} is not installed (apt-get install redis-server)")
    return path


def _wait_until(check: Callable[[], object], what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError as error:
            last = error
        time.sleep(0.05)
    raise RedisNodesError(f"{what} not within {timeout} s (last error: {last})")


class RedisProcess:
    """One `redis-server` (data node or sentinel) on a free port."""

    def __init__(self, workdir: Path, name: str, arguments: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.workdir = workdir / f"{name}-{self.port}"
        self.name = name
        self.arguments = list(arguments)
        self._process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def ask(self, *command: object) -> object:
        """One command on a connection of its own (closed again at once)."""
        with self.client() as client:
            return client.execute_command(*command)

    def start(self, *, config: str | None = None) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [_executable("redis-server")]
        if config is not None:
            path = self.workdir / "redis.conf"
            path.write_text(config)
            command.append(str(path))
        command += [
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)),
            *self.arguments,
        ]
        log = (self.workdir / "redis.log").open("ab")
        with log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 - redis-server, by path
        _wait_until(lambda: self.ask("PING"), f"{self.name} on port {self.port} answering")
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, replicas or sentinels."""
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()


class SentinelGroup:
    """A master, one replica and three sentinels watching them (quorum 2)."""

    def __init__(self, workdir: Path) -> None:
        data_node = [*NO_PERSISTENCE, "--repl-diskless-sync-delay", "0"]
        self.master = RedisProcess(workdir, "master", data_node)
        self.replica = RedisProcess(workdir, "replica", data_node)
        self.sentinels = [RedisProcess(workdir, f"sentinel{n}", ["--sentinel"]) for n in range(3)]

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/{db}"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start(config=f"replicaof 127.0.0.1 {self.master.port}\n")
        _wait_until(self._replica_in_sync, "the replica in sync")
        for sentinel in self.sentinels:
            sentinel.start(config=self._sentinel_config())
        _wait_until(self._sentinels_ready, "the sentinels seeing each other and the replica")
        return self

    def _sentinel_config(self) -> str:
        # Written to a file of the sentinel's own: a sentinel rewrites its configuration.
        return (
            "sentinel resolve-hostnames no\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )

    def _replica_in_sync(self) -> bool:
        with self.replica.client() as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(MASTER_NAME)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def master_port(self) -> int:
        """The port the sentinels name as master now."""
        with self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def kill_all(self) -> None:
        for process in (*self.sentinels, self.replica, self.master):
            process.kill()


class RedisClusterNodes:
    """Three masters (no replicas) forming one cluster over the 16384 slots."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [
            RedisProcess(
                workdir,
                f"node{n}",
                [*NO_PERSISTENCE, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
            )
            for n in range(CLUSTER_MASTERS)
        ]
        self.workdir = workdir

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> RedisClusterNodes:
        for node in self.nodes:
            # The bus port defaults to port + 10000, which a free port above 55535 cannot have.
            node.start(
                config=f"cluster-config-file {node.workdir}/nodes.conf\n"
                f"cluster-port {free_port()}\n"
            )
        subprocess.run(  # noqa: S603 - redis-cli, by path
            [
                _executable("redis-cli"),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        _wait_until(self._cluster_ok, "the cluster state ok on every node")
        return self

    def _cluster_ok(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
        return True

    def slot_owners(self) -> dict[int, RedisProcess]:
        """Which node serves each of the 16384 slots now."""
        by_port = {node.port: node for node in self.nodes}
        with self.nodes[0].client() as client:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        owners = {}
        for first, last, master, *_ in ranges:
            for slot in range(first, last + 1):
                owners[slot] = by_port[int(master[1])]
        return owners

    def move_slot(self, slot: int, to: RedisProcess) -> None:
        """Migrate one slot, keys and all, to another master (what resharding does)."""
        source = self.slot_owners()[slot]
        ids = {node.port: node.ask("CLUSTER", "MYID").decode() for node in self.nodes}  # type: ignore[attr-defined]
        to.ask("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
        source.ask("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to.port])
        while keys := source.ask("CLUSTER", "GETKEYSINSLOT", slot, 100):
            source.ask("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)  # type: ignore[misc]
        for node in self.nodes:
            node.ask("CLUSTER", "SETSLOT", slot, "NODE", ids[to.port])

    def kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

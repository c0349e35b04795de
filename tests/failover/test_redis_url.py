"""`REDIS_URL`'s forms: one server, Sentinel, Cluster; a bad one stops a service at start
with one line naming `REDIS_URL` and never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.redis_connect import Mode, parse_redis_url
from tests.processes import console_script, run_to_exit
from tests.relay.harness import JWT_SECRET

SECRET = "s3cret-pass"


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    target = parse_redis_url(f"redis+sentinel://:{SECRET}@10.0.0.1:26380,sentinel-b/main/2")
    assert target.mode is Mode.SENTINEL
    assert target.nodes == (("10.0.0.1", 26380), ("sentinel-b", 26379))
    assert (target.master, target.db, target.password) == ("main", 2, SECRET)


def test_a_cluster_url_names_its_seed_nodes() -> None:
    target = parse_redis_url("redis+cluster://user:pw@[::1]:7000,node-b:7001,node-c")
    assert target.mode is Mode.CLUSTER
    assert target.nodes == (("::1", 7000), ("node-b", 7001), ("node-c", 6379))
    assert (target.username, target.password) == ("user", "pw")


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis:6380/1", "unix:///run/redis.sock"]
)
def test_one_server_urls_are_accepted_as_before(url: str) -> None:
    assert parse_redis_url(url).mode is Mode.SINGLE


def test_the_password_is_not_in_the_targets_repr() -> None:
    assert SECRET not in repr(parse_redis_url(f"redis+sentinel://:{SECRET}@host:1/main"))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"redis+sentinel://:{SECRET}@host:26379", id="sentinel-without-master"),
        pytest.param(f"redis+sentinel://:{SECRET}@host:port/main", id="bad-port"),
        pytest.param(f"redis+sentinel://:{SECRET}@host:26379/main/zero", id="bad-database"),
        pytest.param(f"redis+cluster://:{SECRET}@host:7000/3", id="cluster-with-database"),
        pytest.param(f"redis+cluster://:{SECRET}@,host:7000", id="empty-node"),
        pytest.param(f"redis://:{SECRET}@host:port/0", id="redis-bad-port"),
        pytest.param(f"http://:{SECRET}@host:6379", id="scheme"),
    ],
)
def test_a_bad_url_is_refused_without_quoting_the_password(url: str) -> None:
    with pytest.raises(ValueError, match=r"\S") as refused:
        parse_redis_url(url)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("service", [["relay-service"], ["auth-service", "serve"]])
def test_a_bad_redis_url_stops_each_service_with_one_line_naming_it(
    tmp_path: Path, service: list[str]
) -> None:
    settings = {"JWT_SECRET": JWT_SECRET, "REDIS_URL": f"redis+sentinel://:{SECRET}@host:1"}
    result = run_to_exit([console_script(service[0]), *service[1:]], tmp_path, settings)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr
    assert "REDIS_URL" in lines[0]
    assert SECRET not in result.stderr + result.stdout

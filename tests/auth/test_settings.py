"""Settings: a bad value stops `auth-service` at start with one line naming it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI

from auth_service import cli
from auth_service.core.config import AuthSettings, normalize_database_url
from tests.auth.conftest import JWT_SECRET, make_settings
from tests.processes import console_script, run_to_exit


def run_cli(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return run_to_exit([console_script("auth-service"), *args], tmp_path, env, stdin=stdin)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        pytest.param({"JWT_SECRET": "short"}, "JWT_SECRET", id="short-secret"),
        pytest.param({}, "JWT_SECRET", id="missing-secret"),
        pytest.param(
            {"JWT_SECRET": JWT_SECRET, "DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL", id="scheme"
        ),
        pytest.param(
            {"JWT_SECRET": JWT_SECRET, "DATABASE_URL": "::not a url::"},
            "DATABASE_URL",
            id="garbage",
        ),
    ],
)
def test_a_bad_setting_stops_the_service_with_one_line(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    result = run_cli(tmp_path, "serve", **env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert setting in lines[0]


@pytest.mark.parametrize("url", ["mysql://x@y/z", "::not a url::"])
def test_a_bad_database_url_stops_migrate_with_one_line(tmp_path: Path, url: str) -> None:
    """`migrate` reads the database URL alone (the migration job holds no signing key)."""
    result = run_cli(tmp_path, "migrate", DATABASE_URL=url)
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "DATABASE_URL" in line


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/relay", "postgresql+asyncpg://u:p@db:5432/relay"),
        ("postgres://u@db/relay", "postgresql+asyncpg://u@db/relay"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:////tmp/y.db", "sqlite+aiosqlite:////tmp/y.db"),
    ],
)
def test_database_urls_get_the_async_driver(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_the_defaults_are_the_local_sqlite_file_and_port_8000() -> None:
    fields = AuthSettings.model_fields
    assert fields["database_url"].default == "sqlite+aiosqlite:///./factory-relay.db"
    assert fields["port"].default == 8000


def test_first_admin_needs_both_name_and_password(sqlite_database: str) -> None:
    with pytest.raises(ValueError, match="FIRST_ADMIN"):
        make_settings(sqlite_database, first_admin_username="root")


@pytest.mark.parametrize(
    ("allowed", "proxy_headers", "forwarded"),
    [("", False, None), ("10.0.0.1,10.0.0.2", True, "10.0.0.1,10.0.0.2")],
)
def test_serve_trusts_forwarded_headers_only_from_forwarded_allow_ips(
    sqlite_database: str, allowed: str, proxy_headers: bool, forwarded: str | None
) -> None:
    settings = make_settings(sqlite_database, forwarded_allow_ips=allowed, port=8123)
    config = cli.server_config(settings, FastAPI())
    assert config.proxy_headers is proxy_headers
    if proxy_headers:
        assert config.forwarded_allow_ips == forwarded
    assert config.port == 8123


PLACEHOLDER = "CHANGE-ME-PLACEHOLDER"
"""The value `deploy/kubernetes/secret.example.yaml` carries for every secret."""


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        pytest.param({"JWT_SECRET": PLACEHOLDER + "-" + "x" * 32}, "JWT_SECRET", id="jwt"),
        pytest.param({"LIVEKIT_API_SECRET": PLACEHOLDER}, "LIVEKIT_API_SECRET", id="livekit"),
        pytest.param({"LIVEKIT_API_KEY": PLACEHOLDER}, "LIVEKIT_API_KEY", id="livekit-key"),
        pytest.param(
            {"DATABASE_URL": f"postgresql://relay:{PLACEHOLDER}@db:5432/relay"},
            "DATABASE_URL",
            id="database",
        ),
        pytest.param(
            {"REDIS_URL": f"rediss://:{PLACEHOLDER}@redis:6379/0"}, "REDIS_URL", id="redis"
        ),
        pytest.param(
            {"FIRST_ADMIN_USERNAME": "root", "FIRST_ADMIN_PASSWORD": "change-me-please"},
            "FIRST_ADMIN_PASSWORD",
            id="first-admin",
        ),
    ],
)
def test_a_placeholder_secret_stops_the_service_with_one_line(
    tmp_path: Path, env: dict[str, str], setting: str
) -> None:
    result = run_cli(tmp_path, "serve", **{"JWT_SECRET": JWT_SECRET, **env})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0]
    assert "placeholder" in lines[0]


def test_the_kubernetes_example_secret_holds_the_refused_placeholder() -> None:
    example = Path(__file__).parents[2] / "deploy" / "kubernetes" / "secret.example.yaml"
    assert PLACEHOLDER in example.read_text()


def test_a_username_limit_below_the_pair_limit_is_refused(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "serve",
        JWT_SECRET=JWT_SECRET,
        LOGIN_MAX_FAILURES_PER_USERNAME="3",
        LOGIN_MAX_FAILURES_PER_USERNAME_AND_ADDRESS="5",
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert len(lines) == 1
    assert "LOGIN_MAX_FAILURES_PER_USERNAME" in lines[0]


@pytest.mark.parametrize(
    "setting",
    [
        "LOGIN_MAX_FAILURES_PER_USERNAME_AND_ADDRESS",
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        "LOGIN_MAX_SUCCESSES_PER_USERNAME",
        "LOGIN_SUCCESS_WINDOW_SECONDS",
        "REVOCATION_SYNC_INTERVAL_SECONDS",
        "REDIS_TIMEOUT_SECONDS",
        "DATABASE_TIMEOUT_SECONDS",
    ],
)
def test_a_throttle_or_timeout_setting_out_of_range_is_refused(
    sqlite_database: str, setting: str
) -> None:
    with pytest.raises(ValueError, match=setting.lower()):
        make_settings(sqlite_database, **{setting.lower(): 0})

"""The `auth-service` commands that manage users, and the migrations behind them."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import httpx
import pytest
from redis import Redis
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service import cli, users
from auth_service.core.config import AuthSettings
from auth_service.core.db import create_engine, run_migrations, session_factory
from auth_service.core.security import verify_password
from auth_service.main import create_app
from auth_service.models import User
from shared.revocation import revoked_user_key
from tests.auth.conftest import JWT_SECRET, make_settings
from tests.auth.test_settings import run_cli
from tests.cli import BROKEN_SETTINGS, assert_help, assert_usage_error, write_broken_dotenv
from tests.processes import AuthProcess, Listener, console_script, run_to_exit

ADMIN = ("admin", "admin password")
COMMANDS = ["serve", "migrate", "create-user", "demo-users", "set-password"]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite file; the CLI reads it (and the secret) from the environment."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.chdir(tmp_path)
    for name in ("REDIS_URL", "FIRST_ADMIN_USERNAME", "FIRST_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("JWT_ALGORITHM", "HS256")
    run_migrations(url)
    return url


HELP_ARGUMENTS = [
    ["--help"],
    ["-h"],
    ["serve", "--help"],
    ["serve", "-h"],
    ["migrate", "--help"],
    ["create-user", "--help"],
    ["demo-users", "--help"],
    ["set-password", "--help"],
]


@pytest.mark.parametrize("arguments", HELP_ARGUMENTS, ids=" ".join)
def test_help_lists_the_settings_without_reading_them(tmp_path: Path, arguments: list[str]) -> None:
    write_broken_dotenv(tmp_path)
    result = run_cli(tmp_path, *arguments, **BROKEN_SETTINGS)
    assert_help(result, AuthSettings)
    if len(arguments) == 1:
        assert all(name in result.stdout for name in COMMANDS)


@pytest.mark.parametrize("arguments", HELP_ARGUMENTS, ids=" ".join)
def test_help_connects_to_nothing_and_creates_no_database(
    tmp_path: Path, listener: Listener, arguments: list[str]
) -> None:
    result = run_cli(
        tmp_path,
        *arguments,
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=f"postgresql://nobody@127.0.0.1:{listener.port}/db",
        REDIS_URL=f"redis://127.0.0.1:{listener.port}/0",
    )
    assert_help(result, AuthSettings)
    assert listener.connections() == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arguments",
    [["--verbose"], ["serve", "--port", "9000"], ["create-user", "x-1", "--type", "viewer", "-v"]],
    ids=" ".join,
)
def test_an_unknown_option_is_a_usage_error(tmp_path: Path, arguments: list[str]) -> None:
    assert_usage_error(run_cli(tmp_path, *arguments))


def test_a_port_in_use_is_one_line_naming_it_and_port(tmp_path: Path, listener: Listener) -> None:
    result = run_cli(tmp_path, "serve", JWT_SECRET=JWT_SECRET, PORT=str(listener.port))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{listener.port}: port {listener.port} is already"
        " in use: stop what holds it, or set PORT"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing migrated, nothing started


def test_sigterm_stops_the_service_gracefully_with_exit_0(tmp_path: Path) -> None:
    auth = AuthProcess(tmp_path, jwt_secret=JWT_SECRET, admin=ADMIN)
    auth.start()
    try:
        assert auth.stop() == 0
    finally:
        auth.kill()
    assert "Application shutdown complete." in auth.stdout_path.read_text()


def test_the_service_starts_with_a_lower_case_log_level(tmp_path: Path) -> None:
    settings = {"LOG_LEVEL": "info"}
    auth = AuthProcess(tmp_path, jwt_secret=JWT_SECRET, admin=ADMIN, settings=settings)
    try:
        auth.start()
        assert auth.stop() == 0
    finally:
        auth.kill()


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_an_invalid_log_level_stops_the_command_with_one_line_naming_it(
    tmp_path: Path, command: str
) -> None:
    result = run_cli(tmp_path, command, JWT_SECRET=JWT_SECRET, LOG_LEVEL="Verbose")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid setting LOG_LEVEL: ")


def find_user(url: str, name: str) -> User | None:
    async def find() -> User | None:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                return await users.get_user_by_name(session, name)
        finally:
            await engine.dispose()

    return asyncio.run(find())


def test_create_user_reads_the_password_from_stdin(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sub.db'}"
    result = run_cli(
        tmp_path,
        "create-user",
        "plc-bridge",
        "--type",
        "factory",
        stdin="a long enough password\n",
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=url,
    )
    assert result.returncode == 0, result.stderr
    user = find_user(url, "plc-bridge")
    assert user is not None
    assert user.type == "factory"


def test_create_user_refuses_a_taken_name(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for expected_code in (None, 1):
        monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
        if expected_code is None:
            cli.main(["create-user", "Operator-7", "--type", "operator"])
            continue
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["create-user", "operator-7", "--type", "operator"])
        assert exit_info.value.code == expected_code
    assert "taken" in capsys.readouterr().err


@pytest.mark.parametrize("password", ["short", "x" * 1025, ""])
def test_create_user_refuses_a_bad_password(
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    password: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["create-user", "someone", "--type", "viewer"])
    assert exit_info.value.code == 1
    assert "password" in capsys.readouterr().err
    assert find_user(database, "someone") is None


def test_create_user_refuses_a_bad_name(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["create-user", "no spaces", "--type", "viewer"])
    assert exit_info.value.code == 1
    assert "username" in capsys.readouterr().err


def test_demo_users_are_created_once(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["demo-users"])
    first = capsys.readouterr().out
    cli.main(["demo-users"])
    second = capsys.readouterr().out
    for name in ("admin", "operator", "viewer", "factory-1"):
        assert name in first
        assert find_user(database, name) is not None
    assert first.count("password:") == 4
    assert "password:" not in second


def test_migrate_creates_the_tables(database: str) -> None:
    cli.main(["migrate"])

    async def tables() -> set[str]:
        engine = create_async_engine(database)
        try:
            async with engine.connect() as connection:
                names = await connection.run_sync(lambda c: inspect(c).get_table_names())
        finally:
            await engine.dispose()
        return set(names)

    assert {"users", "revoked_tokens", "alembic_version"} <= asyncio.run(tables())


def test_first_admin_is_created_when_there_are_no_users(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"
    run_migrations(url)
    name = f"root-{uuid.uuid4().hex[:6]}"
    settings = make_settings(url, first_admin_username=name, first_admin_password="first password")

    async def start() -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            pass

    asyncio.run(start())
    user = find_user(url, name)
    assert user is not None
    assert user.type == "admin"


FIRST_PASSWORD = "the first password"


def create(tmp_path: Path, name: str, **env: str) -> None:
    """An operator, through `create-user`, with `FIRST_PASSWORD`."""
    stdin = FIRST_PASSWORD + "\n"
    result = run_cli(tmp_path, "create-user", name, "--type", "operator", stdin=stdin, **env)
    assert result.returncode == 0, result.stderr


def password_matches(url: str, name: str, password: str) -> bool:
    user = find_user(url, name)
    assert user is not None
    matches, _new_hash = asyncio.run(verify_password(password, user.password_hash))
    return matches


def test_set_password_reads_the_new_one_from_stdin(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'set.db'}"
    create(tmp_path, "Operator-3", JWT_SECRET=JWT_SECRET, DATABASE_URL=url)
    result = run_cli(
        tmp_path,
        "set-password",
        "operator-3",
        stdin="the second password\n",
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "set the password of 'operator-3'; the tokens issued before are revoked\n"
    )
    assert password_matches(url, "Operator-3", "the second password")
    assert not password_matches(url, "Operator-3", FIRST_PASSWORD)


@pytest.mark.redis
def test_set_password_revokes_the_users_tokens_like_the_api(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}
    auth = AuthProcess(tmp_path, jwt_secret=JWT_SECRET, admin=ADMIN, settings=shared)
    auth.start()
    try:
        form = {"username": ADMIN[0], "password": ADMIN[1]}
        token = httpx.post(f"{auth.http_url}/auth/token", data=form).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        user_id = httpx.get(f"{auth.http_url}/auth/me", headers=bearer).json()["id"]
        result = run_to_exit(
            [console_script("auth-service"), "set-password", ADMIN[0]],
            tmp_path,
            auth.settings,
            stdin="a brand new password\n",
        )
        assert result.returncode == 0, result.stderr
        assert httpx.get(f"{auth.http_url}/auth/me", headers=bearer).status_code == 401
        new_form = {**form, "password": "a brand new password"}
        assert httpx.post(f"{auth.http_url}/auth/token", data=new_form).status_code == 200
    finally:
        auth.kill()
    redis = Redis.from_url(redis_url)
    try:
        assert redis.exists(revoked_user_key(redis_prefix, user_id))  # the relays are told
    finally:
        redis.close()


@pytest.mark.parametrize("password", ["short", "x" * 1025, ""])
def test_set_password_refuses_a_bad_password_and_changes_nothing(
    tmp_path: Path, password: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bad.db'}"
    create(tmp_path, "operator-4", JWT_SECRET=JWT_SECRET, DATABASE_URL=url)
    result = run_cli(
        tmp_path,
        "set-password",
        "operator-4",
        stdin=password + "\n",
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=url,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: password: ")
    assert password_matches(url, "operator-4", FIRST_PASSWORD)


def test_set_password_refuses_an_unknown_user(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'none.db'}"
    result = run_cli(
        tmp_path,
        "set-password",
        "nobody",
        stdin="a long enough password\n",
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=url,
    )
    assert result.returncode == 1
    assert result.stderr == "error: no user is named 'nobody'\n"


def test_demo_users_says_how_to_reset_a_password_when_they_exist(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main(["demo-users"])
    assert "set-password" not in capsys.readouterr().out
    cli.main(["demo-users"])
    second = capsys.readouterr().out
    assert "admin, operator, viewer, factory-1 exist already" in second
    assert "auth-service set-password NAME" in second

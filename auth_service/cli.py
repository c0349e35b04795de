"""`auth-service`: the auth service's HTTP API, its database, and its users.

The commands import the service (FastAPI, SQLAlchemy, argon2) when they run, not at the
top: `--help` answers without loading any of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import secrets
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from auth_service.core.config import AuthSettings, MigrationSettings
from shared.cli import bind_listener, command_parser, fail, help_texts
from shared.identity import UserType
from shared.limits import raise_open_file_limit
from shared.logging import configure_logging, get_logger
from shared.settings import load_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from auth_service.schemas import UserCreate, UserUpdate

log = get_logger(__name__)

STARTUP_FAILURE = 3
"""uvicorn's exit code when the application cannot start."""
DESCRIPTION = "The auth service: its HTTP API, its database and its users."
BRIDGE_CREDENTIALS = Path(".factory-bridge.env")
"""Written by `demo-users` beside `.env`: the demo factory's login for `factory-bridge`."""
DEMO_USERS = (
    ("admin", UserType.ADMIN),
    ("operator", UserType.OPERATOR),
    ("viewer", UserType.VIEWER),
    ("factory-1", UserType.FACTORY),
)


def prepare_embedded_database(settings: AuthSettings) -> None:
    """The embedded SQLite database is migrated on start; PostgreSQL has a migrate step."""
    from auth_service.core.db import run_migrations

    if settings.uses_sqlite:
        run_migrations(settings.database_url)


def serve(settings: AuthSettings) -> None:
    """Bind HOST:PORT first: a port in use is one line, before migrations and app start-up."""
    import uvicorn

    from auth_service.main import create_app

    listener = bind_listener(settings.host, settings.port)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again to whatever
    # handler was there before: with this one, a requested stop exits 0 like the relay.
    signal.signal(signal.SIGTERM, _exit_stopped)
    configure_logging(settings.log_level, service="auth-service")
    raise_open_file_limit()
    prepare_embedded_database(settings)
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    log.info("auth_listening", host=settings.host, port=settings.port)
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT: uvicorn has shut down gracefully
        server.run(sockets=[listener])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _exit_stopped(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def server_config(settings: AuthSettings, app: FastAPI) -> uvicorn.Config:
    import uvicorn

    trusted_proxies = settings.forwarded_allow_ips.strip()
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or None,
    )


def read_password() -> str:
    """Twice at a prompt on a terminal; otherwise one line of standard input."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            fail("the passwords do not match")
        return password
    return sys.stdin.readline().rstrip("\r\n")


async def _create_users(settings: AuthSettings, accounts: Sequence[UserCreate]) -> list[str]:
    """Create each account; the names that were taken already."""
    from auth_service import users
    from auth_service.core.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    taken = []
    try:
        async with session_factory(engine)() as session:
            for account in accounts:
                try:
                    await users.create_user(session, account)
                except users.UsernameTakenError:
                    taken.append(account.username)
    finally:
        await engine.dispose()
    return taken


def create_user(settings: AuthSettings, username: str, user_type: UserType) -> None:
    from auth_service.schemas import UserCreate

    try:
        account = UserCreate(username=username, password=read_password(), type=user_type)
    except ValidationError as error:
        fail(_invalid(error))
    prepare_embedded_database(settings)
    if asyncio.run(_create_users(settings, [account])):
        fail(f"the username {username!r} is taken")
    print(f"created {user_type.value} {username!r}")


def set_password(settings: AuthSettings, username: str) -> None:
    """Like a password change through the API: the user's tokens are revoked too."""
    from pydantic import TypeAdapter

    from auth_service.schemas import Password, UserUpdate

    password = read_password()
    try:
        TypeAdapter(Password).validate_python(password)  # create-user's rule, and its message
    except ValidationError as error:
        fail(_invalid(error, "password"))
    change = UserUpdate(password=password)
    prepare_embedded_database(settings)
    if not asyncio.run(_update_user(settings, username, change)):
        fail(f"no user is named {username!r}")
    print(f"set the password of {username!r}; the tokens issued before are revoked")


async def _update_user(settings: AuthSettings, username: str, change: UserUpdate) -> bool:
    """Apply the change and revoke as the API does (the database first, then Redis when
    set); False: no user."""
    from auth_service import users
    from auth_service.core.db import create_engine, session_factory
    from auth_service.revocation import Revocations
    from auth_service.services import redis_client, revocation_sync

    engine = create_engine(settings.database_url, settings.database_timeout_seconds)
    redis = redis_client(settings)
    sessions = session_factory(engine)
    sync = revocation_sync(settings, redis, sessions)
    revocations = Revocations(sync, settings.access_token_ttl_seconds)
    try:
        async with sessions() as session:
            user = await users.get_user_by_name(session, username)
            if user is None:
                return False
            cutoff = await users.apply_update(user, change)
            await revocations.commit_user_revocation(session, user, cutoff)
        if sync is not None and sync.has_pending_events:
            print(
                "warning: done, but Redis could not be told: relays may accept the old "
                "tokens until the auth service restores its copy (it does after a Redis "
                "outage it notices, and at every start)",
                file=sys.stderr,
            )
        return True
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def _invalid(error: ValidationError, name: str = "") -> str:
    """`field: problem`, one per problem, the field named `name` when the error has no place."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in error.errors())


def demo_users(settings: AuthSettings) -> None:
    """Create the demo accounts that do not exist yet; print their passwords once."""
    from auth_service.schemas import UserCreate

    prepare_embedded_database(settings)
    accounts = [
        UserCreate(username=name, password=secrets.token_urlsafe(12), type=user_type)
        for name, user_type in DEMO_USERS
    ]
    taken = set(asyncio.run(_create_users(settings, accounts)))
    for account in accounts:
        if account.username not in taken:
            print(f"{account.type.value:<9} {account.username:<10} password: {account.password}")
            if account.type is UserType.FACTORY:
                save_bridge_credentials(account)
    if taken:
        names = ", ".join(name for name, _ in DEMO_USERS if name in taken)
        print(f"the demo users {names} exist already: their passwords were printed once, when")
        print(f"they were created ({BRIDGE_CREDENTIALS} keeps factory-1's). To set a new one:")
        print(f"  {_this_command()} set-password NAME   (reads it from standard input)")


def _this_command() -> str:
    """As the user typed it (`.venv/bin/auth-service` under `make run`)."""
    invoked = Path(sys.argv[0])
    return str(invoked) if invoked.name == "auth-service" else "auth-service"


def save_bridge_credentials(account: UserCreate) -> None:
    """Let `factory-bridge` (started by `make run`) log in as the demo factory."""
    descriptor = os.open(BRIDGE_CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as credentials:
        credentials.write(f"BRIDGE_USERNAME={account.username}\n")
        credentials.write(f"BRIDGE_PASSWORD={account.password}\n")


def parser() -> argparse.ArgumentParser:
    """Every command's `--help` lists the settings; none of them is read to answer it."""
    settings = [AuthSettings]
    root = command_parser("auth-service", DESCRIPTION, settings)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        description = summary[:1].upper() + summary[1:] + "."
        return commands.add_parser(name, help=summary, **help_texts(description, settings))

    command("serve", "run the HTTP API on HOST:PORT")
    command("migrate", "upgrade the database schema to the latest revision")
    create = command("create-user", "create a user; the password is read from standard input")
    create.add_argument("username")
    create.add_argument("--type", required=True, choices=[t.value for t in UserType])
    command("demo-users", "create admin, operator, viewer and factory-1 if they do not exist")
    reset = command(
        "set-password",
        "set a user's password, read from standard input, and revoke the user's tokens",
    )
    reset.add_argument("username")
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "migrate":
        from auth_service.core.db import run_migrations

        # The database alone: the migration job holds no signing key and no other secret.
        run_migrations(load_settings(MigrationSettings).database_url)
        return
    settings = load_settings(AuthSettings)
    if args.command == "serve":
        serve(settings)
    else:
        with reporting_unavailable():
            if args.command == "create-user":
                create_user(settings, args.username, UserType(args.type))
            elif args.command == "demo-users":
                demo_users(settings)
            elif args.command == "set-password":
                set_password(settings, args.username)


@contextlib.contextmanager
def reporting_unavailable() -> Iterator[None]:
    """The database or Redis down: one line, as for a bad setting, not a traceback."""
    try:
        yield
    except Exception as error:
        from auth_service.errors import UNAVAILABLE_ERRORS

        if not isinstance(error, UNAVAILABLE_ERRORS):
            raise
        reason = (str(error).splitlines() or [repr(error)])[0]
        fail(f"the database or Redis is unreachable (DATABASE_URL, REDIS_URL): {reason}")


if __name__ == "__main__":
    main()

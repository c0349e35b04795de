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
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from auth_service.core.config import AuthSettings
from shared.cli import bind_listener, command_parser, fail, help_texts
from shared.identity import UserType
from shared.logging import configure_logging, get_logger
from shared.settings import load_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from auth_service.schemas import UserCreate

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
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
    prepare_embedded_database(settings)
    if asyncio.run(_create_users(settings, [account])):
        fail(f"the username {username!r} is taken")
    print(f"created {user_type.value} {username!r}")


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
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings(AuthSettings)
    if args.command == "serve":
        serve(settings)
    elif args.command == "migrate":
        from auth_service.core.db import run_migrations

        run_migrations(settings.database_url)
    elif args.command == "create-user":
        create_user(settings, args.username, UserType(args.type))
    elif args.command == "demo-users":
        demo_users(settings)


if __name__ == "__main__":
    main()

"""`auth-service`: serve, migrate, create-user, demo-users."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import uvicorn
from pydantic import ValidationError

from auth_service import users
from auth_service.core.config import AuthSettings, DatabaseSettings
from auth_service.core.db import create_engine, run_migrations, session_factory
from auth_service.main import create_app
from auth_service.schemas import UserCreate
from shared.identity import UserType
from shared.limits import raise_open_file_limit
from shared.logging import configure_logging
from shared.settings import load_settings

BRIDGE_CREDENTIALS = Path(".factory-bridge.env")
"""Written by `demo-users` beside `.env`: the demo factory's login for `factory-bridge`."""
DEMO_USERS = (
    ("admin", UserType.ADMIN),
    ("operator", UserType.OPERATOR),
    ("viewer", UserType.VIEWER),
    ("factory-1", UserType.FACTORY),
)


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def prepare_embedded_database(settings: AuthSettings) -> None:
    """The embedded SQLite database is migrated on start; PostgreSQL has a migrate step."""
    if settings.uses_sqlite:
        run_migrations(settings.database_url)


def serve(settings: AuthSettings) -> None:
    configure_logging(settings.log_level, service="auth-service")
    raise_open_file_limit()
    prepare_embedded_database(settings)
    trusted_proxies = settings.forwarded_allow_ips.strip()
    uvicorn.run(
        create_app(settings),
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
    root = argparse.ArgumentParser(prog="auth-service", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API (HOST, PORT)")
    commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    create = commands.add_parser(
        "create-user", help="create a user; the password is read from standard input"
    )
    create.add_argument("username")
    create.add_argument("--type", required=True, choices=[t.value for t in UserType])
    commands.add_parser("demo-users", help="create admin, operator, viewer and factory-1")
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "migrate":
        # The database alone: the migration job holds no signing key and no other secret.
        run_migrations(load_settings(DatabaseSettings).database_url)
        return
    settings = load_settings(AuthSettings)
    if args.command == "serve":
        serve(settings)
    elif args.command == "create-user":
        create_user(settings, args.username, UserType(args.type))
    elif args.command == "demo-users":
        demo_users(settings)


if __name__ == "__main__":
    main()

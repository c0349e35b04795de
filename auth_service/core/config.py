"""The auth service's settings: the common ones plus database, signing key, LiveKit, logins."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.identity import USERNAME_PATTERN
from shared.keys import load_private_key, load_public_keys
from shared.settings import (
    CommaSeparated,
    CommonSettings,
    LogLevel,
    key_file,
    read_secret_files,
    split_commas,
)

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./factory-relay.db"
PLACEHOLDER_MARK = "change-me"
"""The example manifests' and docs' placeholders (`CHANGE-ME-PLACEHOLDER`): never a secret."""
ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def refuse_placeholder(value: str | None) -> None:
    """A value copied from an example (`CHANGE-ME…`) must not reach production."""
    if value is not None and PLACEHOLDER_MARK in value.lower():
        raise ValueError("holds the example placeholder (CHANGE-ME…): set a real value")


def url_password(url: str | None) -> str | None:
    """The password part of a URL (`scheme://user:password@host`), if any."""
    if url is None:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def normalize_database_url(value: str) -> str:
    """Parse a database URL and point it at the async driver (asyncpg or aiosqlite)."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL (expected postgresql://… or sqlite://…)") from None
    driver = ASYNC_DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(f"unsupported scheme {url.drivername!r}: use postgresql:// or sqlite://")
    if not url.database or url.database == ":memory:":
        raise ValueError("names no database (SQLite needs a file path)")
    return url.set(drivername=driver).render_as_string(hide_password=False)


ORIGIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
"""A URL's `host[:port]`, as the console's Content-Security-Policy may name it."""


def check_relay_public_url(url: str) -> str:
    """A path on the console's origin, or an absolute `ws://`/`wss://` URL with a host."""
    parsed = urlsplit(url)
    is_path = url.startswith("/") and not url.startswith("//")
    if not is_path and (parsed.scheme not in ("ws", "wss") or not parsed.hostname):
        raise ValueError("must be a path (/ws) or a ws:// or wss:// URL with a host")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError("must not carry a query, a fragment or credentials")
    if not is_path and (not ORIGIN_HOST.fullmatch(parsed.netloc) or parsed.port == 0):
        raise ValueError("names no valid host[:port]")
    return url


class DatabaseSettings(BaseSettings):
    """Only the database URL: what `alembic` needs, without the token settings."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    database_url_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _database_url_file(cls, data: object) -> object:
        return read_secret_files(data, ("database_url",))

    @field_validator("database_url")
    @classmethod
    def _async_database_url(cls, value: str) -> str:
        refuse_placeholder(url_password(value))
        return normalize_database_url(value)

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class MigrationSettings(DatabaseSettings):
    """What `auth-service migrate` reads: the database, and LOG_LEVEL checked like everywhere
    else. No signing key nor any other secret: the migration job holds none."""

    log_level: LogLevel = "INFO"


class AuthSettings(CommonSettings, DatabaseSettings):
    """Everything `auth-service` reads from the environment and `.env`."""

    port: int = Field(default=8000, ge=1, le=65535)
    jwt_private_key_file: Path | None = None
    jwt_previous_public_key_files: CommaSeparated = []

    livekit_url: str | None = Field(default=None, max_length=2048)
    livekit_api_key: str | None = Field(default=None, max_length=256)
    livekit_api_secret: SecretStr | None = None
    livekit_api_secret_file: Path | None = None
    livekit_token_ttl_seconds: int = Field(default=3600, gt=0, le=86400)
    relay_public_url: str = Field(default="/ws", max_length=2048)
    """The relay's WebSocket URL the console uses: `ws(s)://host[:port]/path`, or a path on
    the console's own origin (a load balancer routing `/ws` to the relays)."""

    first_admin_username: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    first_admin_password: SecretStr | None = None
    first_admin_password_file: Path | None = None

    login_max_failures_per_username_and_address: int = Field(default=5, ge=1, le=1000)
    login_max_failures_per_address: int = Field(default=20, ge=1, le=100_000)
    login_max_failures_per_username: int = Field(default=100, ge=1, le=100_000)
    login_failure_window_seconds: int = Field(default=300, ge=1, le=86400)
    login_max_successes_per_username: int = Field(default=60, ge=1, le=100_000)
    login_max_successes_per_address: int = Field(default=600, ge=1, le=1_000_000)
    login_success_window_seconds: int = Field(default=60, ge=1, le=86400)
    forwarded_allow_ips: str = ""

    database_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    revocation_sync_interval_seconds: float = Field(default=5.0, ge=0.1, le=300)

    @model_validator(mode="before")
    @classmethod
    def _auth_secret_files(cls, data: object) -> object:
        return read_secret_files(data, ("livekit_api_secret", "first_admin_password"))

    @field_validator(
        "livekit_url",
        "livekit_api_key",
        "livekit_api_secret",
        "first_admin_username",
        "first_admin_password",
        "jwt_private_key_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("jwt_previous_public_key_files", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("jwt_previous_public_key_files")
    @classmethod
    def _previous_public_keys_load(cls, paths: list[str]) -> list[str]:
        for path in paths:
            key_file(Path(path), load_public_keys)
        return paths

    @field_validator("livekit_url")
    @classmethod
    def _livekit_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        return url

    @field_validator("jwt_secret", "livekit_api_key", "livekit_api_secret", "first_admin_password")
    @classmethod
    def _no_placeholder(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        refuse_placeholder(value.get_secret_value() if isinstance(value, SecretStr) else value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _no_placeholder_redis_password(cls, url: str | None) -> str | None:
        refuse_placeholder(url_password(url))
        return url

    @field_validator("relay_public_url")
    @classmethod
    def _relay_public_url(cls, url: str) -> str:
        return check_relay_public_url(url)

    @field_validator("jwt_private_key_file")
    @classmethod
    def _private_key_loads(cls, path: Path | None) -> Path | None:
        return key_file(path, load_private_key)

    @field_validator("first_admin_password")
    @classmethod
    def _first_admin_password_length(cls, password: SecretStr | None) -> SecretStr | None:
        if password is not None and not 8 <= len(password.get_secret_value()) <= 1024:
            raise ValueError("must be 8 to 1024 characters")
        return password

    @model_validator(mode="after")
    def _first_admin_complete(self) -> AuthSettings:
        if (self.first_admin_username is None) != (self.first_admin_password is None):
            raise ValueError("FIRST_ADMIN_USERNAME, FIRST_ADMIN_PASSWORD: set both or neither")
        return self

    @model_validator(mode="after")
    def _username_limit_is_the_highest(self) -> AuthSettings:
        """Per username across addresses is the loose limit; below the pair's it would
        let anyone lock a user out from everywhere."""
        if self.login_max_failures_per_username < self.login_max_failures_per_username_and_address:
            raise ValueError(
                "LOGIN_MAX_FAILURES_PER_USERNAME: must be at least "
                "LOGIN_MAX_FAILURES_PER_USERNAME_AND_ADDRESS"
            )
        return self

    def _check_asymmetric_keys(self) -> None:
        """The auth service signs, so under EdDSA it needs the private key."""
        if self.jwt_algorithm == "EdDSA" and self.jwt_private_key_file is None:
            raise ValueError("JWT_PRIVATE_KEY_FILE: required when JWT_ALGORITHM is EdDSA")

    @property
    def livekit_configured(self) -> bool:
        return None not in (self.livekit_url, self.livekit_api_key, self.livekit_api_secret)

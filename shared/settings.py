"""Settings common to both services, read from the environment and a `.env` file.

A bad value must stop a service at start with one line naming the setting:
`load_settings` turns pydantic's validation error into exactly that.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Literal, NoReturn, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.functional_validators import BeforeValidator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.keys import load_public_keys
from shared.redis_connect import parse_redis_url

MIN_SECRET_BYTES = 32
JWKS_REFRESH_SECONDS = 300

CommaSeparated = Annotated[list[str], NoDecode]
CommaSeparatedSecrets = Annotated[list[SecretStr], NoDecode]


def _upper_case(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper_case)]
"""`LOG_LEVEL`, in any case (`info`, `Info`, `INFO`), for both services and the bridge."""


class CommonSettings(BaseSettings):
    """Token, broker, CORS and listener settings shared by the auth service and the relay."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    jwt_algorithm: Literal["HS256", "EdDSA"] = "HS256"
    jwt_secret: SecretStr | None = None
    jwt_previous_secrets: CommaSeparatedSecrets = []
    jwt_secret_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwks_url: str | None = Field(default=None, max_length=2048)
    jwks_refresh_seconds: float = Field(default=JWKS_REFRESH_SECONDS, ge=1, le=86400)
    jwt_issuer: str = Field(default="factory-relay-auth", min_length=1)
    jwt_audience: str = Field(default="factory-relay", min_length=1)
    access_token_ttl_seconds: int = Field(default=86400, gt=0, le=30 * 86400)

    redis_url: str | None = None
    redis_url_file: Path | None = None
    redis_prefix: str = Field(default="factory-relay", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    cors_origins: CommaSeparated = []

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: LogLevel = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _common_secret_files(cls, data: object) -> object:
        return read_secret_files(data, ("jwt_secret", "redis_url"))

    @field_validator("cors_origins", "jwt_previous_secrets", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an explicit http(s) origin")
        return [origin.rstrip("/") for origin in origins]

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url in (None, ""):
            return None
        parse_redis_url(url)  # its ValueError names what is wrong, never the password
        return url

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes")
        return secret

    @field_validator("jwt_previous_secrets")
    @classmethod
    def _previous_secrets_long_enough(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        if any(len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES for secret in secrets):
            raise ValueError(f"each secret must be at least {MIN_SECRET_BYTES} bytes")
        return secrets

    @field_validator("jwt_public_key_file", "jwks_url", mode="before")
    @classmethod
    def _empty_key_source_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("jwt_public_key_file")
    @classmethod
    def _public_keys_load(cls, path: Path | None) -> Path | None:
        return key_file(path, load_public_keys)

    @field_validator("jwks_url")
    @classmethod
    def _jwks_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url

    @model_validator(mode="after")
    def _key_material_for_algorithm(self) -> CommonSettings:
        if self.jwt_algorithm == "HS256" and self.jwt_secret is None:
            raise ValueError("JWT_SECRET: required when JWT_ALGORITHM is HS256")
        if self.jwks_url is not None and self.jwt_algorithm != "EdDSA":
            raise ValueError("JWKS_URL: only with JWT_ALGORITHM=EdDSA")
        if self.jwks_url is not None and self.jwt_public_key_file is not None:
            raise ValueError("JWKS_URL, JWT_PUBLIC_KEY_FILE: set one, not both")
        self._check_asymmetric_keys()
        return self

    def _check_asymmetric_keys(self) -> None:
        """The relay needs public keys under EdDSA; the auth service overrides this."""
        no_keys = self.jwt_public_key_file is None and self.jwks_url is None
        if self.jwt_algorithm == "EdDSA" and no_keys:
            raise ValueError(
                "JWT_PUBLIC_KEY_FILE or JWKS_URL: one is required when JWT_ALGORITHM is EdDSA"
            )

    def hs256_secrets(self) -> list[str]:
        """`JWT_SECRET` (it signs, at the auth service) then `JWT_PREVIOUS_SECRETS`."""
        assert self.jwt_secret is not None  # enforced by the settings validator
        secrets = [self.jwt_secret, *self.jwt_previous_secrets]
        return list(dict.fromkeys(secret.get_secret_value() for secret in secrets))


def split_commas(value: object) -> object:
    """`a, b,c` → `["a", "b", "c"]` (empty items dropped); other values unchanged."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


FILE_SUFFIX = "_file"


def read_secret_files(data: object, names: Iterable[str]) -> object:
    """`NAME_FILE` instead of `NAME`: the setting's value is that file's content.

    How secrets reach a container without sitting in its environment (compose `secrets:`,
    Kubernetes Secret volumes, Vault agents). One trailing newline is dropped (`echo`
    writes one). Setting both, or naming a file that cannot be read, is a bad setting;
    the message names the path, never the content. For a `mode="before"` model validator.
    """
    if not isinstance(data, dict):
        return data
    values = dict(data)
    for name in names:
        file_field = name + FILE_SUFFIX
        path = values.get(file_field)
        if path is None or str(path) == "":
            values[file_field] = None
            continue
        label = file_field.upper()
        if values.get(name) not in (None, ""):
            raise ValueError(f"{name.upper()}, {label}: set one or the other")
        try:
            content = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ValueError(f"{label}: cannot read {path}: {reason}") from None
        values[name] = content.removesuffix("\n").removesuffix("\r")
    return values


def key_file(path: Path | None, load: Callable[[Path], object]) -> Path | None:
    """Check at start that a key file exists and holds the right kind of key."""
    if path is None:
        return None
    try:
        load(path)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"cannot load a key from {path}: {error}") from None
    return path


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Build the settings, or stop the process with one line naming the bad setting."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix") or "")
        _exit_with(describe_settings_error(error, prefix))


def describe_settings_error(error: ValidationError, env_prefix: str = "") -> str:
    """One line per problem, each naming the environment variable at fault."""
    problems = []
    for detail in error.errors():
        location = "_".join(str(part) for part in detail["loc"]).upper()
        if location:
            location = env_prefix.upper() + location
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "invalid setting " + "; ".join(problems)


def _exit_with(line: str) -> NoReturn:
    print(f"error: {line}", file=sys.stderr)
    raise SystemExit(2)

"""Reading the deployment files the way their tools do: compose interpolation, .env files,
the settings each service accepts, the console scripts the project installs."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from auth_service.core.config import AuthSettings
from relay_service.config import RelaySettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES = ROOT / "deploy" / "kubernetes"
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf.template"

HEARTBEAT_INTERVAL_MS = RelaySettings.model_fields["heartbeat_interval_ms"].default
SECRET_SETTINGS = frozenset(
    {
        "JWT_SECRET",
        "DATABASE_URL",
        "REDIS_URL",
        "LIVEKIT_API_KEY",
        "LIVEKIT_API_SECRET",
        "FIRST_ADMIN_PASSWORD",
        "POSTGRES_PASSWORD",
    }
)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[_A-Za-z][_A-Za-z0-9]*))"
)
_BRACED = re.compile(r"(?P<name>[_A-Za-z][_A-Za-z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)
_ENV_LINE = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


class InterpolationError(ValueError):
    """`${NAME:?message}` met an unset or empty NAME: compose refuses to start."""


def setting_names(settings_class: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings_class.model_fields}


ALL_SETTINGS = setting_names(AuthSettings) | setting_names(RelaySettings)


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable syntax: $NAME, ${NAME}, ${NAME:-default}, ${NAME-default},
    ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}, and $$ for a dollar."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise ValueError(f"bad interpolation {match[0]!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        is_set = name in env
        non_empty = is_set and env[name] != ""
        present = non_empty if op and op.startswith(":") else is_set
        if op is None:
            return env.get(name, "")
        if op.endswith("-"):
            return env[name] if present else arg
        if op.endswith("+"):
            return arg if present else ""
        if not present:
            raise InterpolationError(f"{name}: {arg}")
        return env[name]

    return _VARIABLE.sub(replace, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def referenced_variables(node: Any) -> Iterator[tuple[str, str | None, str]]:
    """Every variable the compose file interpolates: (name, operator, argument)."""
    if isinstance(node, str):
        for match in _VARIABLE.finditer(node):
            if match["named"]:
                yield match["named"], None, ""
            elif match["braced"] is not None:
                braced = _BRACED.fullmatch(match["braced"])
                assert braced is not None, match[0]
                yield braced["name"], braced["op"], braced["arg"] or ""
    elif isinstance(node, list):
        for item in node:
            yield from referenced_variables(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from referenced_variables(value)


def env_example() -> tuple[set[str], dict[str, str]]:
    """The names .env.example documents (set or commented out), and the ones it sets."""
    documented: set[str] = set()
    active: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ENV_LINE.match(line.strip())
        if match is None:
            continue
        documented.add(match["name"])
        if not match["comment"]:
            active[match["name"]] = match["value"]
    return documented, active


def console_scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        scripts: dict[str, str] = tomllib.load(pyproject)["project"]["scripts"]
    return scripts


SERVICE_COMMANDS = frozenset(
    {("auth-service", "serve"), ("auth-service", "migrate"), ("relay-service",)}
)
"""What a container may run: the console scripts the tests run, nothing else."""

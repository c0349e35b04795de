"""What the three commands share: `--help` listing their settings, and one-line failures.

`--help` is answered by argparse before any setting is read, so it works with a broken
environment and connects to nothing. The settings it lists come from the pydantic-settings
classes themselves (names, defaults, choices), so the help cannot drift from the code.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import textwrap
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Literal, NoReturn, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

EXIT_FAILURE = 1
"""A command that could not do its job (a port in use, a refused login, a taken name)."""

_NAME_WIDTH = 34
_TEXT_WIDTH = 88


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Stop with one line on standard error, never a traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def command_parser(
    prog: str, description: str, settings: Sequence[type[BaseSettings]]
) -> argparse.ArgumentParser:
    """An argparse parser whose help ends with the settings the command reads."""
    return argparse.ArgumentParser(prog=prog, **help_texts(description, settings))


def help_texts(description: str, settings: Sequence[type[BaseSettings]]) -> dict[str, Any]:
    """The description and settings of a parser or subparser (their layout kept as written)."""
    return {
        "description": textwrap.fill(description, _TEXT_WIDTH),
        "epilog": settings_help(settings),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def settings_help(settings: Sequence[type[BaseSettings]]) -> str:
    """Every environment variable the classes read, with its default, one per line."""
    files: list[str] = []
    lines: list[str] = []
    for settings_class in settings:
        files.extend(f for f in _env_files(settings_class) if f not in files)
        prefix = str(settings_class.model_config.get("env_prefix") or "")
        for name, field in settings_class.model_fields.items():
            lines.append(f"  {_env_name(prefix, name, field):<{_NAME_WIDTH}} {_describe(field)}")
    source = "the environment"
    if files:
        source += f" or {', '.join(files)} in the working directory"
    return f"settings (from {source}; default in brackets):\n" + "\n".join(lines)


def _env_files(settings_class: type[BaseSettings]) -> list[str]:
    env_file = settings_class.model_config.get("env_file")
    if env_file is None:
        return []
    if isinstance(env_file, str | Path):
        return [str(env_file)]
    return [str(path) for path in env_file]


def _env_name(prefix: str, name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    return (alias if isinstance(alias, str) else prefix + name).upper()


def _describe(field: FieldInfo) -> str:
    parts = []
    if field.description:
        parts.append(field.description)
    choices = _choices(field.annotation)
    if choices:
        parts.append("one of " + ", ".join(choices))
    parts.append(f"[{_default(field)}]")
    return " ".join(parts)


def _choices(annotation: object) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(choice) for choice in get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    return []


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    if value is None or value == "":
        return "unset"
    if isinstance(value, SecretStr):
        return "secret"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


# -- listening ------------------------------------------------------------------------

_LISTEN_ERRORS = {
    errno.EADDRINUSE: "port {port} is already in use: stop what holds it, or set PORT",
    errno.EADDRNOTAVAIL: "{host} is not an address of this machine: set HOST",
    errno.EACCES: "port {port} needs privileges: set PORT above 1023",
}


def listen_error(host: str, port: int, error: OSError) -> str | None:
    """One line naming the setting to change, if `error` is a failure to listen; else None."""
    if isinstance(error, socket.gaierror):
        return f"cannot listen on {host}:{port}: HOST {host!r} does not resolve"
    reason = _LISTEN_ERRORS.get(error.errno or 0)
    if reason is None:
        return None
    return f"cannot listen on {host}:{port}: " + reason.format(host=host, port=port)


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to HOST:PORT (as asyncio binds it), or a one-line failure."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        fail(listen_error(host, port, error) or f"cannot listen on {host}:{port}: {error}")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        sock.close()
        fail(listen_error(host, port, error) or f"cannot listen on {host}:{port}: {error}")
    return sock

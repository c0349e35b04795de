"""`relay-service`: start one relay replica on `HOST`:`PORT`."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from relay_service.config import RelaySettings
from relay_service.server import serve_until_stopped
from shared.cli import bind_listener, command_parser, fail, listen_error
from shared.limits import raise_open_file_limit
from shared.logging import configure_logging
from shared.settings import load_settings

DESCRIPTION = (
    "One relay replica: the WebSocket gateway at /ws, with /healthz, /readyz and /metrics, "
    "on HOST:PORT. SIGTERM or SIGINT drains it (every session is closed with 1012)."
)


def main(argv: Sequence[str] | None = None) -> None:
    command_parser("relay-service", DESCRIPTION, [RelaySettings]).parse_args(argv)
    settings = load_settings(RelaySettings)
    # A port in use is found before the broker connects and logs: one line, then exit.
    bind_listener(settings.host, settings.port).close()
    configure_logging(settings.log_level, service="relay")
    raise_open_file_limit()
    try:
        run(serve_until_stopped(settings))
    except OSError as error:  # taken between the check above and the relay's own bind
        line = listen_error(settings.host, settings.port, error)
        if line is None:
            raise
        fail(line)


def run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop where it is installed (it ships with uvicorn[standard] on Linux)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    main()

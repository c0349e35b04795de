"""`relay-service`: start one relay replica on `HOST`:`PORT`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relay_service.config import RelaySettings
from relay_service.main import serve_until_stopped
from shared.cli import command_parser
from shared.logging import configure_logging
from shared.settings import load_settings

DESCRIPTION = (
    "One relay replica: the WebSocket gateway at /ws, with /healthz, /readyz and /metrics, "
    "on HOST:PORT. SIGTERM or SIGINT drains it (every session is closed with 1012)."
)


def main(argv: Sequence[str] | None = None) -> None:
    command_parser("relay-service", DESCRIPTION, [RelaySettings]).parse_args(argv)
    settings = load_settings(RelaySettings)
    configure_logging(settings.log_level, service="relay")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux
        asyncio.run(serve_until_stopped(settings))
    else:
        uvloop.run(serve_until_stopped(settings))


if __name__ == "__main__":
    main()

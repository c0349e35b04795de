"""`relay-service`: start one relay replica on `HOST`:`PORT`."""

from __future__ import annotations

import asyncio

from relay_service.config import RelaySettings
from relay_service.server import serve_until_stopped
from shared.limits import raise_open_file_limit
from shared.logging import configure_logging
from shared.settings import load_settings


def main() -> None:
    settings = load_settings(RelaySettings)
    configure_logging(settings.log_level, service="relay")
    raise_open_file_limit()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] on Linux
        asyncio.run(serve_until_stopped(settings))
    else:
        uvloop.run(serve_until_stopped(settings))


if __name__ == "__main__":
    main()

"""Container healthcheck: GET /healthz of the service in this container, exit 0 or 1.

Slim images have no curl, so this is python's urllib. The port is `PORT` when set,
otherwise the service's default: 8001 for `relay-service`, 8000 for `auth-service`
(read from the container's main process, PID 1).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

AUTH_DEFAULT_PORT = 8000
RELAY_DEFAULT_PORT = 8001
TIMEOUT_SECONDS = 3


def port() -> int:
    if os.environ.get("PORT"):
        return int(os.environ["PORT"])
    try:
        command = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        command = b""
    return RELAY_DEFAULT_PORT if b"relay-service" in command else AUTH_DEFAULT_PORT


def main() -> int:
    url = os.environ.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{port()}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            healthy: bool = response.status == 200
    except OSError as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The operator console: its static files, its configuration, and the policy that keeps its
token on the deployment's own hosts.

The console learns where the relay is only from this server (`GET /console/config.json`,
from `RELAY_PUBLIC_URL`), never from its own URL: a link to the genuine console cannot
send the user's token elsewhere. The Content-Security-Policy's `connect-src` names only
this origin, the configured relay and, when configured, LiveKit.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from auth_service.core.config import ORIGIN_HOST, AuthSettings

CONSOLE_DIRECTORY = Path(__file__).resolve().parents[1] / "console"
"""The operator console: static files, served at `/console/`."""

WEBSOCKET_TO_HTTP = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
HTTP_TO_WEBSOCKET = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def _origins(url: str | None, *, both_schemes: bool) -> list[str]:
    """`scheme://host[:port]` of an absolute URL (and its HTTP or WebSocket twin); none for
    a path, which is the console's own origin (`'self'`)."""
    if url is None:
        return []
    parsed = urlsplit(url)
    if parsed.scheme not in WEBSOCKET_TO_HTTP or not ORIGIN_HOST.fullmatch(parsed.netloc):
        return []
    schemes = [parsed.scheme]
    if both_schemes:
        schemes = [HTTP_TO_WEBSOCKET[parsed.scheme], WEBSOCKET_TO_HTTP[parsed.scheme]]
    return [f"{scheme}://{parsed.netloc}" for scheme in schemes]


def content_security_policy(settings: AuthSettings) -> str:
    """The console's CSP: everything from this origin; connections also to the relay and
    LiveKit (whose client speaks both WebSocket and HTTP to its server)."""
    livekit = settings.livekit_url if settings.livekit_configured else None
    connect = [
        "'self'",
        *_origins(settings.relay_public_url, both_schemes=False),
        *_origins(livekit, both_schemes=True),
    ]
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        f"connect-src {' '.join(dict.fromkeys(connect))}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


class ConsoleFiles(StaticFiles):
    """The console's static files, each with the console's security headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(directory=CONSOLE_DIRECTORY, html=True)
        self.security_headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self.security_headers)
        return response


def mount_console(app: FastAPI, settings: AuthSettings) -> None:
    """Serve the console at `/console/`, its configuration at `/console/config.json`."""
    headers = {
        "Content-Security-Policy": content_security_policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    config = {"relay_url": settings.relay_public_url, "livekit": settings.livekit_configured}

    @app.get("/console", include_in_schema=False)
    async def console_redirect() -> RedirectResponse:
        return RedirectResponse("/console/")

    @app.get("/console/config.json", include_in_schema=False)
    async def console_config() -> JSONResponse:
        return JSONResponse(config, headers={**headers, "Cache-Control": "no-store"})

    app.mount("/console", ConsoleFiles(headers), name="console")

"""The auth service's Prometheus metrics, served at `/metrics` on each replica.

Labels are bounded sets: the route *template* (`/users/{user_id}`, never the id), the
method, the status code, a login's outcome. Never a username, user id or address.
Everything is observed by one ASGI middleware, so no route has to remember to count.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, status
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "other"
"""Paths no API route matched (the console's static files, 404s): one label for all."""
LOGIN_ROUTE = "/auth/token"
LOGIN_OUTCOMES = {
    200: "success",
    401: "invalid_credentials",
    422: "malformed",
    429: "throttled",
    503: "unavailable",
}
INTERNAL_ERROR = 500

REQUESTS = Counter(
    "auth_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "auth_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOGINS = Counter(
    "auth_logins_total",
    "Login attempts (POST or GET /auth/token), by outcome: success, invalid_credentials, "
    "malformed, throttled, unavailable, error.",
    ["outcome"],
)

router = APIRouter(tags=["metrics"])


FORWARDED_HEADER = "x-forwarded-for"


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """For scrapers that reach the pod itself. A request relayed by a proxy (the ingress,
    whose `/` routes here, or nginx) carries X-Forwarded-For and gets 404: the metrics
    are never published to the internet, whatever the proxy in front forgets to block."""
    if FORWARDED_HEADER in request.headers:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The matched route's path template; FastAPI puts the route in the scope."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method=method, route=route, status=str(status)).inc()
    LATENCY.labels(method=method, route=route).observe(seconds)
    if route == LOGIN_ROUTE:
        LOGINS.labels(outcome=LOGIN_OUTCOMES.get(status, "error")).inc()


class MetricsMiddleware:
    """Counts and times every HTTP request once its status is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = INTERNAL_ERROR

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The routing fills scope["route"] in place, so it is known here.
            observe(scope["method"], route_template(scope), status, time.perf_counter() - started)

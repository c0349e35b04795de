"""Logging in through the auth service's REST API, for clients given credentials.

A failure says whether trying again can help: `LoginUnavailableError` (the auth service
unreachable, or answering 429 or 503, with its `Retry-After`) is worth retrying;
`LoginRefusedError` (wrong credentials, a disabled account, any other answer) is not, and
retrying it would only keep the account throttled.
"""

from __future__ import annotations

import email.utils
import http
import math
import time

import httpx

RETRYABLE_STATUSES = frozenset(
    {http.HTTPStatus.TOO_MANY_REQUESTS, http.HTTPStatus.SERVICE_UNAVAILABLE}
)
"""Busy, not refused: the only answers retried, with network errors."""
MAX_RETRY_AFTER_SECONDS = 3600.0
"""A longer `Retry-After` is honoured only up to this (a typo must not park a bridge a day)."""


class LoginError(Exception):
    """The auth service refused the credentials or could not be reached."""


class LoginRefusedError(LoginError):
    """Refused for good (401 for wrong credentials, or any answer but 429/503): fix the setup."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class LoginUnavailableError(LoginError):
    """Unreachable, or busy (429, 503): try again, not before `retry_after` seconds if set."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def login(auth_url: str, username: str, password: str, *, request_timeout: float = 10) -> str:
    """`POST /auth/token` with the OAuth2 password form; returns the access token."""
    form = {"username": username, "password": password}
    try:
        async with httpx.AsyncClient(base_url=auth_url, timeout=request_timeout) as client:
            response = await client.post("/auth/token", data=form)
    except httpx.HTTPError as error:
        raise LoginUnavailableError(f"auth service unreachable: {error!r}") from error
    if response.status_code in RETRYABLE_STATUSES:
        raise LoginUnavailableError(
            f"login deferred ({response.status_code}): {_detail(response)}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if response.status_code != http.HTTPStatus.OK:
        raise LoginRefusedError(
            f"login refused ({response.status_code}): {_detail(response)}", response.status_code
        )
    try:
        token: str = response.json()["access_token"]
    except (ValueError, KeyError, TypeError):
        raise LoginRefusedError("login answered without a token", response.status_code) from None
    return token


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds from now (it is a number of seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except (ValueError, AttributeError):
        return response.text[:200]

"""Logging in through the auth service's REST API, for clients given credentials."""

from __future__ import annotations

import httpx


class LoginError(Exception):
    """The auth service refused the credentials or could not be reached."""


async def login(auth_url: str, username: str, password: str, *, request_timeout: float = 10) -> str:
    """`POST /auth/token` with the OAuth2 password form; returns the access token."""
    form = {"username": username, "password": password}
    try:
        async with httpx.AsyncClient(base_url=auth_url, timeout=request_timeout) as client:
            response = await client.post("/auth/token", data=form)
    except httpx.HTTPError as error:
        raise LoginError(f"auth service unreachable: {error}") from error
    if response.status_code != 200:
        raise LoginError(f"login refused ({response.status_code}): {_detail(response)}")
    token: str = response.json()["access_token"]
    return token


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except ValueError:
        return response.text[:200]

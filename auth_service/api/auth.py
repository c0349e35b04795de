"""Login (form and HTTP Basic, one implementation), the current user, logout."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials, OAuth2PasswordRequestForm

from auth_service import users
from auth_service.api.deps import CurrentUser, ServicesDep, SessionDep, TokenClaimsDep
from auth_service.core.security import verify_password
from auth_service.schemas import (
    PASSWORD_MAX_LENGTH,
    TokenResponse,
    UserPublic,
)
from auth_service.services import Services
from auth_service.throttle import LoginThrottledError
from shared.identity import USERNAME_PATTERN
from shared.logging import get_logger

router = APIRouter(prefix="/auth", tags=["auth"])
basic_scheme = HTTPBasic(realm="factory-relay")
log = get_logger(__name__)

BEARER_CHALLENGE = "Bearer"
BASIC_CHALLENGE = 'Basic realm="factory-relay"'
USERNAME_RE = re.compile(USERNAME_PATTERN, re.ASCII)
NO_STORE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
"""RFC 6749 section 5.1: a response carrying a token is never cached."""


def client_address(request: Request) -> str:
    """The peer, or the forwarded client when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(character) == "Cc" for character in text)


def could_exist(username: str, password: str) -> bool:
    """Whether a user could have these credentials; a username outside `[A-Za-z0-9_.-]`
    (a look-alike such as the Kelvin sign for K) or over-long input cannot."""
    return USERNAME_RE.fullmatch(username) is not None and len(password) <= PASSWORD_MAX_LENGTH


async def login(
    username: str,
    password: str,
    *,
    request: Request,
    response: Response,
    session: SessionDep,
    services: Services,
    challenge: str,
) -> TokenResponse:
    """Check credentials under the throttle and mint a token; one path for both routes.

    The throttle counts the attempt before anything else, so a Redis that fails (down,
    full, hung) answers 503 before any password is checked: never an unthrottled oracle.
    """
    address = client_address(request)
    try:
        attempt = await services.throttle.attempt(username, address)
    except LoginThrottledError as throttled:
        log.warning("login_throttled", address=address)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many login attempts, try again later",
            headers={"Retry-After": str(throttled.retry_after)},
        ) from None
    if has_control_character(username):  # counted above, like any failure
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="username: control characters are not allowed",
        )
    # Input that cannot match a user still pays for one hash, like any failure.
    user = (
        await users.get_user_by_name(session, username) if could_exist(username, password) else None
    )
    password_ok, new_hash = await verify_password(
        password[:PASSWORD_MAX_LENGTH], user.password_hash if user else None
    )
    if user is None or not password_ok or user.disabled:
        # A submitted username is not logged: people type passwords into that field.
        log.info("login_failed", user=user.username if user else None, address=address)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password",
            headers={"WWW-Authenticate": challenge},
        )
    await services.throttle.succeeded(attempt)
    if new_hash is not None:
        await users.replace_password_hash(session, user, new_hash)
        log.info("password_rehashed", user=user.username)
    token, _claims = services.issuer.issue(
        user_id=str(user.id), username=user.username, user_type=user.type
    )
    log.info("login", user=user.username, address=address)
    response.headers.update(NO_STORE_HEADERS)
    return TokenResponse(access_token=token, expires_in=services.issuer.ttl_seconds)


@router.post("/token", summary="Log in with the OAuth2 password form")
async def login_with_form(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
) -> TokenResponse:
    return await login(
        form.username,
        form.password,
        request=request,
        response=response,
        session=session,
        services=services,
        challenge=BEARER_CHALLENGE,
    )


@router.get("/token", summary="Log in with HTTP Basic credentials")
async def login_with_basic(
    credentials: Annotated[HTTPBasicCredentials, Depends(basic_scheme)],
    request: Request,
    response: Response,
    session: SessionDep,
    services: ServicesDep,
) -> TokenResponse:
    return await login(
        credentials.username,
        credentials.password,
        request=request,
        response=response,
        session=session,
        services=services,
        challenge=BASIC_CHALLENGE,
    )


@router.get("/me")
async def read_me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    user: CurrentUser, claims: TokenClaimsDep, session: SessionDep, services: ServicesDep
) -> Response:
    await services.revocations.revoke_token(session, claims)
    log.info("logout", user=user.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

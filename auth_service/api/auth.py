"""Login (form and HTTP Basic, one implementation), the current user, logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials, OAuth2PasswordRequestForm

from auth_service import users
from auth_service.api.deps import CurrentUser, ServicesDep, SessionDep, TokenClaimsDep
from auth_service.core.security import verify_password
from auth_service.schemas import (
    PASSWORD_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
    TokenResponse,
    UserPublic,
)
from auth_service.services import Services
from shared.logging import get_logger

router = APIRouter(prefix="/auth", tags=["auth"])
basic_scheme = HTTPBasic(realm="factory-relay")
log = get_logger(__name__)

BEARER_CHALLENGE = "Bearer"
BASIC_CHALLENGE = 'Basic realm="factory-relay"'


def client_address(request: Request) -> str:
    """The peer, or the forwarded client when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


async def login(
    username: str,
    password: str,
    *,
    request: Request,
    session: SessionDep,
    services: Services,
    challenge: str,
) -> TokenResponse:
    """Check credentials under the throttle and mint a token; one path for both routes."""
    address = client_address(request)
    retry_after = await services.throttle.retry_after(username, address)
    if retry_after is not None:
        log.warning("login throttled", address=address)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many failed logins, try again later",
            headers={"Retry-After": str(retry_after)},
        )
    # Over-long input cannot match a user; it still pays for one hash, like any failure.
    plausible = len(username) <= USERNAME_MAX_LENGTH and len(password) <= PASSWORD_MAX_LENGTH
    user = await users.get_user_by_name(session, username) if plausible else None
    password_ok = await verify_password(
        password[:PASSWORD_MAX_LENGTH], user.password_hash if user else None
    )
    if user is None or not password_ok or user.disabled:
        await services.throttle.record_failure(username, address)
        log.info("login failed", address=address)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="incorrect username or password",
            headers={"WWW-Authenticate": challenge},
        )
    token, _claims = services.issuer.issue(
        user_id=str(user.id), username=user.username, user_type=user.type
    )
    log.info("login", user_id=str(user.id), address=address)
    return TokenResponse(access_token=token, expires_in=services.issuer.ttl_seconds)


@router.post("/token", summary="Log in with the OAuth2 password form")
async def login_with_form(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    session: SessionDep,
    services: ServicesDep,
) -> TokenResponse:
    return await login(
        form.username,
        form.password,
        request=request,
        session=session,
        services=services,
        challenge=BEARER_CHALLENGE,
    )


@router.get("/token", summary="Log in with HTTP Basic credentials")
async def login_with_basic(
    credentials: Annotated[HTTPBasicCredentials, Depends(basic_scheme)],
    request: Request,
    session: SessionDep,
    services: ServicesDep,
) -> TokenResponse:
    return await login(
        credentials.username,
        credentials.password,
        request=request,
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
    log.info("logout", user_id=str(user.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Dependencies as `Annotated` aliases that chain: services → session → token → user."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service import users
from auth_service.models import User
from auth_service.services import Services
from shared.identity import UserType
from shared.tokens import InvalidTokenError, TokenClaims

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def unauthorized(detail: str) -> NoReturn:
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_token_claims(
    services: ServicesDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> TokenClaims:
    if not token:
        unauthorized("not authenticated")
    try:
        return await services.verifier.verify(token)
    except InvalidTokenError:
        unauthorized("invalid or expired token")


TokenClaimsDep = Annotated[TokenClaims, Depends(get_token_claims)]


async def get_current_user(
    services: ServicesDep, session: SessionDep, claims: TokenClaimsDep
) -> User:
    """The token's user, if it still exists, is enabled and the token is not revoked."""
    try:
        user_id = uuid.UUID(claims.user_id)
    except ValueError:
        unauthorized("invalid or expired token")
    user = await users.get_user(session, user_id)
    if user is None or user.disabled:
        unauthorized("user unknown or disabled")
    if await services.revocations.is_revoked(session, claims, user):
        unauthorized("token revoked")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin(user: CurrentUser) -> User:
    if user.type is not UserType.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admins only")
    return user


AdminUser = Annotated[User, Depends(get_admin)]


async def get_target_user(user_id: uuid.UUID, session: SessionDep) -> User:
    """The user named by the path's `{user_id}`, or 404."""
    user = await users.get_user(session, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="user not found")
    return user


TargetUser = Annotated[User, Depends(get_target_user)]

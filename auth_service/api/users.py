"""User administration, admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from auth_service import users
from auth_service.api.deps import AdminUser, ServicesDep, SessionDep, TargetUser, get_admin
from auth_service.models import User
from auth_service.schemas import UserCreate, UserList, UserPublic, UserUpdate
from shared.identity import UserType
from shared.logging import get_logger

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(get_admin)])
log = get_logger(__name__)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, session: SessionDep, admin: AdminUser) -> UserPublic:
    try:
        user = await users.create_user(session, data)
    except users.UsernameTakenError:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="username already taken") from None
    log.info("user_created", user=user.username, user_type=user.type.value, by=admin.username)
    return UserPublic.model_validate(user)


@router.get("")
async def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> UserList:
    items, total = await users.list_users(session, limit=limit, offset=offset)
    return UserList(items=[UserPublic.model_validate(user) for user in items], total=total)


@router.get("/{user_id}")
async def read_user(user: TargetUser) -> UserPublic:
    return UserPublic.model_validate(user)


async def keep_an_active_admin(session: SessionDep, user: User, *, leaves: bool) -> None:
    """409 when `user` is the last active admin and the change would take that away.

    Counted under a lock on the active admins' rows (PostgreSQL), so two admins demoting
    each other at once cannot both succeed.
    """
    if not leaves or user.type is not UserType.ADMIN or user.disabled:
        return
    if await users.count_active_admins(session, lock=True) <= 1:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail="the last active admin cannot be removed, demoted or disabled",
        )


@router.patch("/{user_id}", responses={409: {"description": "it would leave no active admin"}})
async def update_user(
    changes: UserUpdate,
    user: TargetUser,
    session: SessionDep,
    services: ServicesDep,
    admin: AdminUser,
) -> UserPublic:
    leaves = changes.disabled is True or changes.type not in (None, UserType.ADMIN)
    await keep_an_active_admin(session, user, leaves=leaves)
    cutoff = await users.apply_update(user, changes)
    await services.revocations.commit_user_revocation(session, user, cutoff)
    log.info(
        "user_updated",
        user=user.username,
        fields=sorted(changes.model_fields_set),
        by=admin.username,
    )
    return UserPublic.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"description": "it would leave no active admin"}},
)
async def delete_user(
    user: TargetUser, session: SessionDep, services: ServicesDep, admin: AdminUser
) -> Response:
    await keep_an_active_admin(session, user, leaves=True)
    await services.revocations.delete_user(session, user, await users.revocation_cutoff())
    log.info("user_deleted", user=user.username, by=admin.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

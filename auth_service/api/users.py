"""User administration, admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from auth_service import users
from auth_service.api.deps import ServicesDep, SessionDep, TargetUser, get_admin
from auth_service.schemas import UserCreate, UserList, UserPublic, UserUpdate
from shared.logging import get_logger

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Depends(get_admin)])
log = get_logger(__name__)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, session: SessionDep) -> UserPublic:
    try:
        user = await users.create_user(session, data)
    except users.UsernameTakenError:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="username already taken") from None
    log.info("user created", user_id=str(user.id), type=user.type.value)
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


@router.patch("/{user_id}")
async def update_user(
    changes: UserUpdate, user: TargetUser, session: SessionDep, services: ServicesDep
) -> UserPublic:
    cutoff = await users.apply_update(user, changes)
    await services.revocations.commit_user_revocation(session, user.id, cutoff)
    log.info("user updated", user_id=str(user.id), fields=sorted(changes.model_fields_set))
    return UserPublic.model_validate(user)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user: TargetUser, session: SessionDep, services: ServicesDep) -> Response:
    await session.delete(user)
    await services.revocations.commit_user_revocation(
        session, user.id, await users.revocation_cutoff()
    )
    log.info("user deleted", user_id=str(user.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

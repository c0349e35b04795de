"""The factories, for the people who watch and command them (admins, operators, viewers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from auth_service import users
from auth_service.api.deps import CurrentUser, SessionDep
from auth_service.models import User
from auth_service.schemas import FactoryList, FactoryPublic
from shared.identity import UserType


def get_observer(user: CurrentUser) -> User:
    if user.type is UserType.FACTORY:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="factories do not list factories")
    return user


router = APIRouter(prefix="/factories", tags=["factories"], dependencies=[Depends(get_observer)])


@router.get("", responses={403: {"description": "a factory's token"}})
async def list_factories(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> FactoryList:
    """Every factory user, by name: `{"items": [{"username", "disabled", "created_at"}…],
    "total": N}`."""
    items, total = await users.list_factories(session, limit=limit, offset=offset)
    return FactoryList(items=[FactoryPublic.model_validate(user) for user in items], total=total)

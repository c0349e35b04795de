"""LiveKit access tokens for a factory's room."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from auth_service import users
from auth_service.api.deps import CurrentUser, ServicesDep, SessionDep
from auth_service.models import User
from auth_service.schemas import LiveKitTokenResponse
from shared.identity import USERNAME_PATTERN, UserType, username_key

router = APIRouter(prefix="/livekit", tags=["livekit"])

RoomQuery = Annotated[
    str | None,
    Query(
        min_length=3,
        max_length=64,
        pattern=USERNAME_PATTERN,
        description="The factory's username; a factory may omit it (its own room).",
    ),
]


async def resolve_room(user: User, room: str | None, session: SessionDep) -> str:
    """A factory's own room, or the existing factory room another user asks for."""
    if user.type is UserType.FACTORY:
        if room is not None and username_key(room) != username_key(user.username):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="a factory joins its own room")
        return user.username
    if room is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail="room: name a factory's room"
        )
    factory = await users.get_user_by_name(session, room)
    if factory is None or factory.type is not UserType.FACTORY:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such factory room")
    return factory.username


@router.get("/token")
async def livekit_token(
    user: CurrentUser, session: SessionDep, services: ServicesDep, room: RoomQuery = None
) -> LiveKitTokenResponse:
    if services.livekit is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="LiveKit not configured")
    room_name = await resolve_room(user, room, session)
    token = services.livekit.mint(identity=user.username, user_type=user.type, room=room_name)
    return LiveKitTokenResponse(
        token=token,
        url=services.livekit.url,
        room=room_name,
        identity=user.username,
        can_publish=user.type is UserType.FACTORY,
    )

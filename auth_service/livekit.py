"""LiveKit access tokens: who may join which room, with every grant set explicitly.

A factory publishes its camera into the room named after itself and subscribes to
nothing (it has no one to watch: least privilege). Everyone else joins a factory's room
to watch: subscribe only, no publishing of media or data.
"""

from __future__ import annotations

from datetime import timedelta

from livekit import api

from shared.identity import UserType

CAMERA_SOURCES = ["camera"]


def video_grants(user_type: UserType, room: str) -> api.VideoGrants:
    is_factory = user_type is UserType.FACTORY
    return api.VideoGrants(
        room=room,
        room_join=True,
        room_create=False,
        room_list=False,
        room_record=False,
        room_admin=False,
        can_publish=is_factory,
        can_publish_sources=CAMERA_SOURCES if is_factory else [],
        can_subscribe=not is_factory,
        can_publish_data=False,
        can_update_own_metadata=False,
        ingress_admin=False,
        hidden=False,
        recorder=False,
        agent=False,
    )


class LiveKitTokens:
    def __init__(self, *, url: str, api_key: str, api_secret: str, ttl_seconds: int) -> None:
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._ttl = timedelta(seconds=ttl_seconds)

    def mint(self, *, identity: str, user_type: UserType, room: str) -> str:
        token = (
            api.AccessToken(self._api_key, self._api_secret)
            .with_identity(identity)
            .with_name(identity)
            .with_ttl(self._ttl)
            .with_grants(video_grants(user_type, room))
        )
        return str(token.to_jwt())

"""Request and response bodies: one base, layered create / update / public models."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from shared.identity import USERNAME_PATTERN, UserType

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024
USERNAME_MAX_LENGTH = 64

Username = Annotated[
    str, Field(min_length=3, max_length=USERNAME_MAX_LENGTH, pattern=USERNAME_PATTERN)
]
Password = Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]


class Schema(BaseModel):
    """Strict about unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class UserBase(Schema):
    username: Username
    type: UserType


class UserCreate(UserBase):
    password: Password = Field(repr=False)


class UserUpdate(Schema):
    """A partial change; a field left out stays as it is, `null` is refused."""

    password: Password | SkipJsonSchema[None] = Field(default=None, repr=False)
    type: UserType | SkipJsonSchema[None] = None
    disabled: bool | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_nulls(self) -> UserUpdate:
        for name in self.model_fields_set:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self


class UserPublic(UserBase):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    disabled: bool
    created_at: datetime


class UserList(Schema):
    items: list[UserPublic]
    total: int


class FactoryPublic(Schema):
    """What every user but a factory may know of a factory: its name and whether it may
    log in (`disabled`), not its id."""

    model_config = ConfigDict(from_attributes=True)

    username: str
    disabled: bool
    created_at: datetime


class FactoryList(Schema):
    items: list[FactoryPublic]
    total: int


class TokenResponse(Schema):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int


class LiveKitTokenResponse(Schema):
    token: str
    url: str
    room: str
    identity: str
    can_publish: bool


class Status(Schema):
    status: Literal["ok"] = "ok"

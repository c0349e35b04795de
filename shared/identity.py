"""Who a user is: the four user types and the username rule both services enforce."""

from __future__ import annotations

from enum import StrEnum

USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]{3,64}$"


class UserType(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    FACTORY = "factory"

    @property
    def is_controller(self) -> bool:
        """Admins can do all an operator can: send commands and events to factories."""
        return self in (UserType.ADMIN, UserType.OPERATOR)


def username_key(username: str) -> str:
    """The case-insensitive key of a username: names are unique regardless of case."""
    return username.lower()

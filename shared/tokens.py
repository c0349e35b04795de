"""JWT minting (auth service) and verification (both services).

Verification pins the one configured algorithm, requires every claim and checks
`iss`, `aud` and `exp`; revocation is a separate, asynchronous check
(`shared.revocation`) because it needs Redis or the database.

`iat` carries milliseconds (RFC 7519 allows a non-integer NumericDate) and is rounded
down: a user's tokens are revoked by "issued before T", and second resolution would
either keep a token minted just before a password change or refuse one minted just
after it.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.identity import UserType
from shared.keys import load_public_key
from shared.settings import CommonSettings

Algorithm = Literal["HS256", "EdDSA"]
REQUIRED_CLAIMS = ("sub", "name", "type", "iat", "exp", "iss", "aud", "jti")


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired, or for another issuer or audience."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    username: str
    user_type: UserType
    issued_at: float
    expires_at: float
    token_id: str


class TokenVerifier:
    """Checks a JWT's signature and claims; cheap enough to call on every Identify."""

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        key: str | bytes | Ed25519PublicKey,
        issuer: str,
        audience: str,
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._jwt = jwt.PyJWT()

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> TokenVerifier:
        return cls(
            algorithm=settings.jwt_algorithm,
            key=_verification_key(settings),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )

    def verify(self, token: str) -> TokenClaims:
        try:
            payload = self._jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(str(error)) from None
        return _claims_from_payload(payload)


class TokenIssuer:
    """Mints access tokens; only the auth service holds the key to do so."""

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        key: str | bytes | Ed25519PrivateKey,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds

    def issue(
        self, *, user_id: str, username: str, user_type: UserType, now: float | None = None
    ) -> tuple[str, TokenClaims]:
        issued_at = math.floor((time.time() if now is None else now) * 1000) / 1000
        claims = TokenClaims(
            user_id=user_id,
            username=username,
            user_type=user_type,
            issued_at=issued_at,
            expires_at=math.floor(issued_at) + self.ttl_seconds,
            token_id=uuid.uuid4().hex,
        )
        payload = {
            "sub": claims.user_id,
            "name": claims.username,
            "type": claims.user_type.value,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": claims.token_id,
        }
        return jwt.encode(payload, self._key, algorithm=self._algorithm), claims


def _claims_from_payload(payload: dict[str, Any]) -> TokenClaims:
    try:
        return TokenClaims(
            user_id=_non_empty_str(payload["sub"]),
            username=_non_empty_str(payload["name"]),
            user_type=UserType(payload["type"]),
            issued_at=float(payload["iat"]),
            expires_at=float(payload["exp"]),
            token_id=_non_empty_str(payload["jti"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidTokenError(f"malformed claims: {error}") from None


def _non_empty_str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _verification_key(settings: CommonSettings) -> str | Ed25519PublicKey:
    if settings.jwt_algorithm == "HS256":
        assert settings.jwt_secret is not None  # enforced by the settings validator
        return settings.jwt_secret.get_secret_value()
    assert settings.jwt_public_key_file is not None
    return load_public_key(settings.jwt_public_key_file)

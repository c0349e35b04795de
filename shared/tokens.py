"""JWT minting (auth service) and verification (both services).

Every token names its signing key in the header's `kid` (see `shared.keys`). The verifier
holds the accepted keys by kid, each with the one algorithm it may be used with: a token
without a `kid`, or naming a key not accepted, is refused like a bad signature. It then
requires every claim and checks `iss`, `aud` and `exp`; revocation is a separate,
asynchronous check (`shared.revocation`) because it needs Redis or the database.

`iat` and `exp` are whole seconds, as strict verifiers require; `shared.revocation`
keeps revocation exact at that resolution.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import HMACAlgorithm

from shared.identity import UserType
from shared.jwks import JwksKeys
from shared.keys import (
    Algorithm,
    VerificationKey,
    b64url_decode,
    ed25519_thumbprint,
    hs256_kid,
    load_public_keys,
)
from shared.settings import CommonSettings

REQUIRED_CLAIMS = ("sub", "name", "type", "iat", "exp", "iss", "aud", "jti")
KNOWN_HEADERS_MAX = 64
"""Token headers whose `kid` is remembered: one per key and header spelling in use."""
PREPARED_KEYS_MAX = 16
"""HS256 secrets whose checks are remembered: the configured ones (a rotation has two)."""


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired, signed by an unknown key, or misdirected."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: str
    username: str
    user_type: UserType
    issued_at: int
    expires_at: int
    token_id: str


class TokenVerifier:
    """Checks a JWT's key, signature and claims; cheap enough to call on every Identify.

    With a `JwksKeys` source (`JWKS_URL`), `start()` must run before use and `aclose()`
    after; until its first fetch succeeds `has_keys` is false and every token is refused.
    """

    def __init__(
        self,
        *,
        keys: Iterable[VerificationKey] = (),
        issuer: str,
        audience: str,
        jwks: JwksKeys | None = None,
    ) -> None:
        self._keys = {key.kid: key for key in keys}
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._jwt = _decoder()
        self._kids: dict[str, str] = {}
        """Header segment → its `kid` (see `_kid`)."""

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> TokenVerifier:
        """The relay's verifier: secrets, public key files, or `JWKS_URL`."""
        issuer, audience = settings.jwt_issuer, settings.jwt_audience
        if settings.jwt_algorithm == "HS256":
            secrets = settings.hs256_secrets()
            keys = [VerificationKey.hs256(secret) for secret in secrets]
            return cls(keys=keys, issuer=issuer, audience=audience)
        if settings.jwks_url is not None:
            jwks = JwksKeys(settings.jwks_url, refresh_seconds=settings.jwks_refresh_seconds)
            return cls(jwks=jwks, issuer=issuer, audience=audience)
        assert settings.jwt_public_key_file is not None  # enforced by the settings validator
        public = load_public_keys(settings.jwt_public_key_file)
        keys = [VerificationKey.ed25519(key) for key in public]
        return cls(keys=keys, issuer=issuer, audience=audience)

    @property
    def has_keys(self) -> bool:
        """Whether any token can verify (false while `JWKS_URL` has not answered once)."""
        return bool(self._keys) or (self._jwks is not None and self._jwks.has_keys)

    async def start(self) -> None:
        if self._jwks is not None:
            await self._jwks.start()

    async def aclose(self) -> None:
        if self._jwks is not None:
            await self._jwks.aclose()

    async def verify(self, token: str) -> TokenClaims:
        """Verify; a `kid` not known yet makes the JWKS source fetch again (rate-limited)."""
        kid = self._kid(token)
        key = self._key(kid)
        if key is None and self._jwks is not None:
            key = await self._jwks.get_or_refetch(kid)
        if key is None:
            raise InvalidTokenError("unknown signing key")
        return self._decode(token, key)

    def verify_cached(self, token: str) -> TokenClaims:
        """Verify with the keys held now, never fetching: the synchronous fast path."""
        key = self._key(self._kid(token))
        if key is None:
            raise InvalidTokenError("unknown signing key")
        return self._decode(token, key)

    def jwk_set(self) -> dict[str, list[dict[str, str]]]:
        """The public keys as an RFC 7517 JWK set (secrets are never in it)."""
        keys = [jwk for key in self._keys.values() if (jwk := key.jwk()) is not None]
        return {"keys": keys}

    def _kid(self, token: str) -> str:
        """`token_kid`, remembered per header segment: every token signed with one key has
        the same header, so it is decoded once. Only headers naming a key held are
        remembered, at most `KNOWN_HEADERS_MAX`: made-up headers cannot fill the memory."""
        header, dot, _ = token.partition(".")
        kid = self._kids.get(header) if dot else None
        if kid is None:
            kid = token_kid(token)
            if len(self._kids) < KNOWN_HEADERS_MAX and self._key(kid) is not None:
                self._kids[header] = kid
        return kid

    def _key(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        if key is None and self._jwks is not None:
            return self._jwks.get(kid)
        return key

    def _decode(self, token: str, key: VerificationKey) -> TokenClaims:
        try:
            payload = self._jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            raise InvalidTokenError(str(error)) from None
        return _claims_from_payload(payload)


class PreparedHMAC(HMACAlgorithm):
    """HS256 that checks each secret once. PyJWT's `prepare_key` checks on every decode
    that the secret is not an asymmetric key, a certificate or a JWK (parse attempts that
    mostly fail by exception: a sizeable share of an Identify's verification); the
    secrets here are the relay's own configured ones, so their verdict is remembered."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._prepared: dict[str | bytes, bytes] = {}

    def prepare_key(self, key: str | bytes) -> bytes:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = super().prepare_key(key)  # raises for a key it refuses
            if len(self._prepared) < PREPARED_KEYS_MAX:
                self._prepared[key] = prepared
        return prepared


def _decoder() -> jwt.PyJWT:
    """PyJWT with `PreparedHMAC` for HS256. PyJWT takes no algorithms of its own: they are
    its signature layer's (`_jws`), which `tests/auth/test_tokens.py` checks is still so."""
    decoder = jwt.PyJWT()
    decoder._jws.unregister_algorithm("HS256")
    decoder._jws.register_algorithm("HS256", PreparedHMAC())
    return decoder


def token_kid(token: str) -> str:
    """The header's `kid`, read before any check (only to pick the key)."""
    header_segment, dot, _ = token.partition(".")
    try:
        header = orjson.loads(b64url_decode(header_segment)) if dot else None
    except ValueError:  # bad base64, not UTF-8, not JSON
        header = None
    if not isinstance(header, dict):
        raise InvalidTokenError("not a JWT")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("no key id (kid) in the header")
    return kid


class TokenIssuer:
    """Mints access tokens; only the auth service holds the key to do so."""

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        key: str | Ed25519PrivateKey,
        issuer: str,
        audience: str,
        ttl_seconds: int,
    ) -> None:
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        if isinstance(key, str):
            self.kid = hs256_kid(key)
        else:
            self.kid = ed25519_thumbprint(key.public_key())

    def issue(
        self, *, user_id: str, username: str, user_type: UserType, now: float | None = None
    ) -> tuple[str, TokenClaims]:
        issued_at = math.floor(time.time() if now is None else now)
        claims = TokenClaims(
            user_id=user_id,
            username=username,
            user_type=user_type,
            issued_at=issued_at,
            expires_at=issued_at + self.ttl_seconds,
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
        token = jwt.encode(payload, self._key, algorithm=self._algorithm, headers={"kid": self.kid})
        return token, claims


def _claims_from_payload(payload: dict[str, Any]) -> TokenClaims:
    try:
        return TokenClaims(
            user_id=_non_empty_str(payload["sub"]),
            username=_non_empty_str(payload["name"]),
            user_type=UserType(payload["type"]),
            issued_at=_whole_seconds(payload["iat"]),
            expires_at=_whole_seconds(payload["exp"]),
            token_id=_non_empty_str(payload["jti"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidTokenError(f"malformed claims: {error}") from None


def _non_empty_str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _whole_seconds(value: object) -> int:
    """`iat` and `exp` are integers: a fractional NumericDate is refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("iat and exp must be integers (whole seconds)")
    return value

"""The public keys that verify tokens, as an RFC 7517 JWK set (`{"keys": []}` under HS256)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel

from auth_service.api.deps import ServicesDep

router = APIRouter(tags=["keys"])

JWKS_MAX_AGE_SECONDS = 300
"""How long a relay or proxy may cache the set: the runbook's wait between rotation steps."""


class PublicJwk(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]
    kid: str


class JwkSet(BaseModel):
    keys: list[PublicJwk]


@router.get("/.well-known/jwks.json", summary="The public keys that verify tokens")
async def jwks(services: ServicesDep, response: Response) -> JwkSet:
    """The signing key's public half first, then `JWT_PREVIOUS_PUBLIC_KEY_FILES`."""
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return JwkSet.model_validate(services.verifier.jwk_set())

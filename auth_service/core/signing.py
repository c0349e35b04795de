"""The token issuer and verifier of the auth service, built from its settings in one place."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth_service.core.config import AuthSettings
from shared.keys import VerificationKey, load_private_key, load_public_keys
from shared.tokens import TokenIssuer, TokenVerifier


def signing_key(settings: AuthSettings) -> str | Ed25519PrivateKey:
    if settings.jwt_algorithm == "HS256":
        assert settings.jwt_secret is not None  # enforced by the settings validator
        return settings.jwt_secret.get_secret_value()
    assert settings.jwt_private_key_file is not None  # enforced by the settings validator
    return load_private_key(settings.jwt_private_key_file)


def token_issuer(settings: AuthSettings) -> TokenIssuer:
    return TokenIssuer(
        algorithm=settings.jwt_algorithm,
        key=signing_key(settings),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )


def verification_keys(settings: AuthSettings) -> list[VerificationKey]:
    """The signing key's own (first), then `JWT_PREVIOUS_SECRETS` or the previous keys."""
    if settings.jwt_algorithm == "HS256":
        return [VerificationKey.hs256(secret) for secret in settings.hs256_secrets()]
    signing = signing_key(settings)
    assert isinstance(signing, Ed25519PrivateKey)
    public = [signing.public_key()]
    for path in settings.jwt_previous_public_key_files:
        public.extend(load_public_keys(Path(path)))
    keys = {key.kid: key for key in map(VerificationKey.ed25519, public)}
    return list(keys.values())


def token_verifier(settings: AuthSettings) -> TokenVerifier:
    """Keys from the signing key and the previous ones (no public key file needed here)."""
    return TokenVerifier(
        keys=verification_keys(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )

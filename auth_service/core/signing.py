"""The token issuer and verifier of the auth service, built from its settings in one place."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auth_service.core.config import AuthSettings
from shared.keys import load_private_key
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


def token_verifier(settings: AuthSettings) -> TokenVerifier:
    """Verification key derived from the signing key (no public key file needed here)."""
    key = signing_key(settings)
    public: str | Ed25519PublicKey = key if isinstance(key, str) else key.public_key()
    return TokenVerifier(
        algorithm=settings.jwt_algorithm,
        key=public,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )

"""Signing keys: Ed25519 PEM files, their JWKs and key ids, and the HS256 key id.

Every token names its key in the header's `kid`, so that several keys can be accepted at
once while a key rotates:

- EdDSA: the RFC 7638 thumbprint of the public key, i.e. the base64url SHA-256 of the
  canonical JWK `{"crv":"Ed25519","kty":"OKP","x":"…"}` (members sorted, no spaces).
- HS256: `hs256-` and the base64url of the first 16 bytes of HMAC-SHA256(secret, a fixed
  label). HMAC is a pseudo-random function: its output tells nothing about the key, and
  guessing the secret from the kid is exactly as hard as guessing it from any token's
  signature, which is an HMAC under the same secret that every token holder already has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HS256_KID_LABEL = b"factory-relay token key id v1"
HS256_KID_BYTES = 16
ED25519_KEY_BYTES = 32
PEM_PUBLIC_KEY = re.compile(
    rb"-----BEGIN PUBLIC KEY-----\r?\n.*?-----END PUBLIC KEY-----", re.DOTALL
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The one Ed25519 public key of a PEM file (or the first, if it holds several)."""
    return load_public_keys(path)[0]


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key of a PEM file: one or more `PUBLIC KEY` blocks."""
    blocks = PEM_PUBLIC_KEY.findall(path.read_bytes())
    if not blocks:
        raise ValueError(f"{path} holds no PEM public key")
    keys = []
    for block in blocks:
        key = serialization.load_pem_public_key(block)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} holds a public key that is not Ed25519")
        keys.append(key)
    return keys


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def write_key_pair(private_path: Path, public_path: Path) -> None:
    """Generate a fresh Ed25519 pair as PEM files (the private one readable by its owner only)."""
    private_key = Ed25519PrivateKey.generate()
    private_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(public_pem(private_key.public_key()))


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ed25519_thumbprint(key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key (RFC 8037 section 2)."""
    canonical = orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw(key))})
    return b64url(hashlib.sha256(canonical).digest())


def ed25519_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK (RFC 7517, RFC 8037) for signatures with EdDSA."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(_raw(key)),
        "use": "sig",
        "alg": "EdDSA",
        "kid": ed25519_thumbprint(key),
    }


def ed25519_from_jwk(jwk: object) -> tuple[str, Ed25519PublicKey]:
    """The kid and key of one JWK for EdDSA signatures; `ValueError` for anything else."""
    if not isinstance(jwk, dict):
        raise ValueError("a JWK must be an object")
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 key")
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") != "EdDSA":
        raise ValueError("not a key for EdDSA signatures")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise ValueError("no x")
    try:
        raw = b64url_decode(x)
    except ValueError:
        raise ValueError("x is not base64url") from None
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError("x is not 32 bytes")
    key = Ed25519PublicKey.from_public_bytes(raw)
    kid = jwk.get("kid", ed25519_thumbprint(key))
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid is not a non-empty string")
    return kid, key


def hs256_kid(secret: str) -> str:
    """An HS256 key id that does not reveal the secret (see the module's docstring)."""
    digest = hmac.new(secret.encode(), HS256_KID_LABEL, hashlib.sha256).digest()
    return "hs256-" + b64url(digest[:HS256_KID_BYTES])


Algorithm = Literal["HS256", "EdDSA"]


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One accepted key, with the only algorithm a token naming its `kid` may use."""

    kid: str
    algorithm: Algorithm
    key: str | Ed25519PublicKey

    @classmethod
    def hs256(cls, secret: str) -> VerificationKey:
        return cls(hs256_kid(secret), "HS256", secret)

    @classmethod
    def ed25519(cls, key: Ed25519PublicKey) -> VerificationKey:
        return cls(ed25519_thumbprint(key), "EdDSA", key)

    def jwk(self) -> dict[str, str] | None:
        """The public JWK to publish, or None for a secret (never published)."""
        if isinstance(self.key, Ed25519PublicKey):
            return ed25519_jwk(self.key)
        return None

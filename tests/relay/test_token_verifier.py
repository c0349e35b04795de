"""The verifier's per-token work done once: HS256 checks each configured secret once
(`shared.tokens.PreparedHMAC`) and a key's token header is decoded once; it refuses
exactly what it refused before."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import HMACAlgorithm
from jwt.exceptions import InvalidKeyError

from shared import tokens as tokens_module
from shared.identity import UserType
from shared.keys import VerificationKey, public_pem
from shared.tokens import InvalidTokenError, PreparedHMAC, TokenIssuer, TokenVerifier

SECRET = "prepared-hmac-secret-0123456789abcdefghijkl"
OTHER_SECRET = "prepared-hmac-other-0123456789abcdefghijkl"
ISSUER = "factory-relay-auth"
AUDIENCE = "factory-relay"


def issue(secret: str) -> str:
    issuer = TokenIssuer(
        algorithm="HS256", key=secret, issuer=ISSUER, audience=AUDIENCE, ttl_seconds=3600
    )
    token, _ = issuer.issue(user_id="u1", username="viewer-1", user_type=UserType.VIEWER)
    return token


def verifier(*secrets: str) -> TokenVerifier:
    keys = [VerificationKey.hs256(secret) for secret in secrets]
    return TokenVerifier(keys=keys, issuer=ISSUER, audience=AUDIENCE)


def test_a_secret_is_checked_once_however_many_tokens_it_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    minted = [issue(SECRET) for _ in range(3)]  # signing prepares the key too
    checks: list[str | bytes] = []
    check = HMACAlgorithm.prepare_key

    def counted(self: HMACAlgorithm, key: str | bytes) -> bytes:
        checks.append(key)
        return check(self, key)

    monkeypatch.setattr(HMACAlgorithm, "prepare_key", counted)
    tokens = verifier(SECRET)
    for token in minted:
        assert tokens.verify_cached(token).username == "viewer-1"
    assert checks == [SECRET]


def test_a_token_signed_with_another_secret_is_still_refused() -> None:
    tokens = verifier(SECRET)
    tokens.verify_cached(issue(SECRET))  # the secret's check is remembered
    forged = issue(OTHER_SECRET).rpartition(".")[2]
    genuine_head = issue(SECRET).rpartition(".")[0]
    with pytest.raises(InvalidTokenError):
        tokens.verify_cached(f"{genuine_head}.{forged}")


def test_an_asymmetric_key_is_refused_as_a_secret_every_time() -> None:
    pem = public_pem(Ed25519PrivateKey.generate().public_key())
    algorithm = PreparedHMAC()
    for _ in range(2):
        with pytest.raises(InvalidKeyError):
            algorithm.prepare_key(pem)


def counted_kid_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    read = tokens_module.token_kid

    def counted(token: str) -> str:
        reads.append(token)
        return read(token)

    monkeypatch.setattr(tokens_module, "token_kid", counted)
    return reads


def test_the_header_of_a_key_held_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    minted = [issue(SECRET) for _ in range(3)]
    reads = counted_kid_reads(monkeypatch)
    tokens = verifier(SECRET)
    for token in minted:
        tokens.verify_cached(token)
    assert len(reads) == 1


def test_a_header_naming_no_key_held_is_decoded_every_time_and_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    minted = [issue(OTHER_SECRET) for _ in range(3)]
    reads = counted_kid_reads(monkeypatch)
    tokens = verifier(SECRET)
    for token in minted:
        with pytest.raises(InvalidTokenError, match="unknown signing key"):
            tokens.verify_cached(token)
    assert len(reads) == 3

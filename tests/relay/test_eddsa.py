"""The production setting: the relay holds only the Ed25519 public key (JWT_ALGORITHM=EdDSA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.identity import UserType
from shared.keys import ed25519_thumbprint, load_private_key, load_public_key, write_key_pair
from shared.protocol import CloseCode
from shared.tokens import TokenIssuer
from tests.processes import RelayProcess
from tests.relay.conftest import StartRelay
from tests.relay.harness import JWT_AUDIENCE, JWT_ISSUER, Connector, Tokens


@pytest.fixture
def issuer(tmp_path: Path) -> TokenIssuer:
    write_key_pair(tmp_path / "jwt.key", tmp_path / "jwt.pub")
    return TokenIssuer(
        algorithm="EdDSA",
        key=load_private_key(tmp_path / "jwt.key"),
        issuer=JWT_ISSUER,
        audience=JWT_AUDIENCE,
        ttl_seconds=3600,
    )


@pytest.fixture
def eddsa_relay(start_relay: StartRelay, tmp_path: Path) -> RelayProcess:
    return start_relay({"JWT_ALGORITHM": "EdDSA", "JWT_PUBLIC_KEY_FILE": str(tmp_path / "jwt.pub")})


def _token(issuer: TokenIssuer) -> str:
    token, _ = issuer.issue(user_id="u-1", username="operator-ed", user_type=UserType.OPERATOR)
    return token


async def test_a_token_signed_with_the_private_key_is_accepted(
    issuer: TokenIssuer, eddsa_relay: RelayProcess, connect: Connector
) -> None:
    client = await connect.raw(eddsa_relay)
    await client.send({"op": 3, "d": {"token": _token(issuer)}})
    ready = await client.recv()
    assert (ready["t"], ready["d"]["user"]["username"]) == ("READY", "operator-ed")


async def test_an_hs256_token_is_refused_by_an_eddsa_relay(
    issuer: TokenIssuer, eddsa_relay: RelayProcess, connect: Connector, tokens: Tokens
) -> None:
    client = await connect.raw(eddsa_relay)
    await client.send({"op": 3, "d": {"token": tokens.user(UserType.OPERATOR).token}})
    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)


async def test_an_hs256_token_signed_with_the_public_key_is_refused(
    issuer: TokenIssuer, eddsa_relay: RelayProcess, connect: Connector, tmp_path: Path
) -> None:
    """The classic algorithm-confusion attack: the public key used as an HMAC secret."""
    public = tmp_path / "jwt.pub"
    kid = ed25519_thumbprint(load_public_key(public))
    forged = Tokens.hmac_signed(Tokens.claims(), public.read_bytes(), kid=kid)
    client = await connect.raw(eddsa_relay)
    await client.send({"op": 3, "d": {"token": forged}})
    await client.expect_close(CloseCode.AUTHENTICATION_FAILED)

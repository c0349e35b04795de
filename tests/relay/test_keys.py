"""SPEC 3, keys: the relay verifies by `kid` with several keys, previous secrets, or JWKS_URL.

JWKS_URL points at a server of the test's own (`JwksServer`), which counts the relay's
fetches: the first at start, one at most per 30 s for tokens naming unknown keys, and
the last good set kept when a fetch fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.exceptions import ConnectionClosed

from shared.identity import UserType
from shared.keys import public_pem
from shared.protocol import CloseCode, Op
from shared.tokens import TokenIssuer
from tests.processes import RelayProcess, console_script, free_port, run_to_exit
from tests.relay.conftest import StartRelay
from tests.relay.harness import (
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_SECRET,
    RECV_TIMEOUT,
    Connector,
    Tokens,
    wait_for_status,
)
from tests.relay.jwks_server import JwksServer

PREVIOUS_SECRET = "relay-previous-secret-0123456789abcdefghij"
FLOOD = 40
RECOVERY_DEADLINE = 10.0


def eddsa_tokens(key: Ed25519PrivateKey) -> Tokens:
    issuer = TokenIssuer(
        algorithm="EdDSA", key=key, issuer=JWT_ISSUER, audience=JWT_AUDIENCE, ttl_seconds=3600
    )
    return Tokens(issuer=issuer)


async def accepted(connect: Connector, relay: RelayProcess, tokens: Tokens) -> bool:
    """Identify with a fresh token of `tokens`: READY (True) or 4004 (False)."""
    client = await connect.raw(relay)
    await client.send({"op": Op.IDENTIFY, "d": {"token": tokens.user(UserType.OPERATOR).token}})
    try:
        async with asyncio.timeout(RECV_TIMEOUT):
            frame = orjson.loads(await client.ws.recv())
    except ConnectionClosed as closed:
        code = None if closed.rcvd is None else closed.rcvd.code
    else:
        assert frame["t"] == "READY"
        await client.close()
        return True
    assert code == CloseCode.AUTHENTICATION_FAILED
    return False


# -- secrets and key files ------------------------------------------------------------


async def test_tokens_of_the_current_and_the_previous_secret_are_accepted(
    start_relay: StartRelay, connect: Connector
) -> None:
    relay = start_relay({"JWT_PREVIOUS_SECRETS": PREVIOUS_SECRET})
    assert await accepted(connect, relay, Tokens(JWT_SECRET))
    assert await accepted(connect, relay, Tokens(PREVIOUS_SECRET))
    assert not await accepted(connect, relay, Tokens("another-secret-" + "q" * 32))


async def test_every_key_in_the_public_key_file_is_accepted_and_no_other(
    start_relay: StartRelay, connect: Connector, tmp_path: Path
) -> None:
    first, second, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    keys = tmp_path / "keys.pub"
    keys.write_bytes(public_pem(first.public_key()) + public_pem(second.public_key()))
    relay = start_relay({"JWT_ALGORITHM": "EdDSA", "JWT_PUBLIC_KEY_FILE": str(keys)})
    assert await accepted(connect, relay, eddsa_tokens(first))
    assert await accepted(connect, relay, eddsa_tokens(second))
    assert not await accepted(connect, relay, eddsa_tokens(stranger))


# -- JWKS_URL -------------------------------------------------------------------------


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys.append(Ed25519PrivateKey.generate())
    with server.serving():
        yield server


def jwks_relay(start_relay: StartRelay, jwks: JwksServer, **settings: str) -> RelayProcess:
    return start_relay({"JWT_ALGORITHM": "EdDSA", "JWKS_URL": jwks.url, **settings})


async def test_the_keys_are_fetched_once_at_start(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    relay = jwks_relay(start_relay, jwks)
    assert jwks.fetches == 1
    for _ in range(3):
        assert await accepted(connect, relay, eddsa_tokens(jwks.keys[0]))
    assert jwks.fetches == 1


async def test_a_key_published_after_start_is_fetched_when_a_token_names_it(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    relay = jwks_relay(start_relay, jwks)
    jwks.keys.append(Ed25519PrivateKey.generate())
    assert await accepted(connect, relay, eddsa_tokens(jwks.keys[1]))
    assert jwks.fetches == 2


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_30s(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    relay = jwks_relay(start_relay, jwks)
    strangers = [eddsa_tokens(Ed25519PrivateKey.generate()) for _ in range(FLOOD)]
    results = await asyncio.gather(*(accepted(connect, relay, tokens) for tokens in strangers))
    assert not any(results)
    jwks.keys.append(Ed25519PrivateKey.generate())  # published after the flood's one fetch
    assert not await accepted(connect, relay, eddsa_tokens(jwks.keys[-1]))
    assert jwks.fetches == 2  # at start, and once for the whole flood
    assert await accepted(connect, relay, eddsa_tokens(jwks.keys[0]))


async def test_a_failed_fetch_keeps_the_last_good_set(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    relay = jwks_relay(start_relay, jwks, JWKS_REFRESH_SECONDS="1")
    jwks.failing = True
    assert not await accepted(connect, relay, eddsa_tokens(Ed25519PrivateKey.generate()))
    await asyncio.sleep(2.5)  # periodic refreshes fail too
    assert jwks.fetches >= 3
    assert await accepted(connect, relay, eddsa_tokens(jwks.keys[0]))


async def test_a_key_withdrawn_from_the_set_is_refused_after_the_next_refresh(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    relay = jwks_relay(start_relay, jwks, JWKS_REFRESH_SECONDS="1")
    retired = jwks.keys.pop()
    jwks.keys.append(Ed25519PrivateKey.generate())
    fetched = jwks.fetches
    deadline = asyncio.get_running_loop().time() + RECOVERY_DEADLINE
    while jwks.fetches < fetched + 2:  # one refresh done, surely applied by the next
        assert asyncio.get_running_loop().time() < deadline, "no periodic refresh"
        await asyncio.sleep(0.1)
    assert not await accepted(connect, relay, eddsa_tokens(retired))
    assert await accepted(connect, relay, eddsa_tokens(jwks.keys[0]))


async def test_a_relay_started_while_the_jwks_url_fails_refuses_tokens_until_it_answers(
    start_relay: StartRelay, jwks: JwksServer, connect: Connector
) -> None:
    jwks.failing = True
    relay = start_relay({"JWT_ALGORITHM": "EdDSA", "JWKS_URL": jwks.url}, wait=False)
    await wait_for_status(relay, "/healthz", 200)
    tokens = eddsa_tokens(jwks.keys[0])
    assert not await accepted(connect, relay, tokens)
    jwks.failing = False
    deadline = asyncio.get_running_loop().time() + RECOVERY_DEADLINE
    while not await accepted(connect, relay, tokens):  # retried in the background, backing off
        assert asyncio.get_running_loop().time() < deadline, "the relay never fetched the keys"
        await asyncio.sleep(0.2)


async def test_a_relay_without_verification_keys_is_not_ready_until_it_has_them(
    start_relay: StartRelay, jwks: JwksServer
) -> None:
    jwks.failing = True
    relay = start_relay({"JWT_ALGORITHM": "EdDSA", "JWKS_URL": jwks.url}, wait=False)
    await wait_for_status(relay, "/readyz", 503)

    jwks.failing = False

    await wait_for_status(relay, "/readyz", 200, within=RECOVERY_DEADLINE)


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        pytest.param(
            {"JWT_SECRET": JWT_SECRET, "JWKS_URL": "http://127.0.0.1:1/jwks.json"},
            "JWKS_URL",
            id="jwks-under-hs256",
        ),
        pytest.param(
            {"JWT_ALGORITHM": "EdDSA", "JWKS_URL": "ftp://example/jwks"},
            "JWKS_URL",
            id="jwks-scheme",
        ),
        pytest.param(
            {
                "JWT_ALGORITHM": "EdDSA",
                "JWKS_URL": "http://127.0.0.1:1/jwks.json",
                "JWT_PUBLIC_KEY_FILE": "{keys}",
            },
            "JWKS_URL",
            id="jwks-and-key-file",
        ),
        pytest.param({"JWT_ALGORITHM": "EdDSA"}, "JWT_PUBLIC_KEY_FILE", id="no-public-key"),
        pytest.param(
            {"JWT_ALGORITHM": "EdDSA", "JWT_PUBLIC_KEY_FILE": "{garbage}"},
            "JWT_PUBLIC_KEY_FILE",
            id="bad-pem",
        ),
        pytest.param(
            {"JWT_SECRET": JWT_SECRET, "JWT_PREVIOUS_SECRETS": f"{PREVIOUS_SECRET},short"},
            "JWT_PREVIOUS_SECRETS",
            id="short-previous-secret",
        ),
    ],
)
def test_a_bad_key_setting_stops_the_relay_with_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    (tmp_path / "keys.pub").write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    (tmp_path / "garbage.pub").write_text(
        "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n"
    )
    files = {"{keys}": str(tmp_path / "keys.pub"), "{garbage}": str(tmp_path / "garbage.pub")}
    env = {name: files.get(value, value) for name, value in settings.items()}
    result = run_to_exit(
        [console_script("relay-service")], tmp_path, {"PORT": str(free_port()), **env}
    )

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert PREVIOUS_SECRET not in result.stderr

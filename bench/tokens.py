"""Token verification per second: the work every relay Identify does.

HS256 (a secret), EdDSA with the public key from a file, and EdDSA with the keys fetched
from a JWKS URL (a local server here) and cached: the case the relay meets on every
Identify once the set is held. Each goes through `await verifier.verify(token)`, the
relay's own call, which finds the key by the token's `kid` and checks the signature and
every claim. The figures are CPU time of this process (per verification, and
verifications per CPU-second), so other load on a shared machine barely moves them.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson

from shared.identity import UserType
from shared.jwks import JwksKeys
from shared.keys import VerificationKey, ed25519_jwk, load_private_key, write_key_pair
from shared.tokens import TokenIssuer, TokenVerifier

ISSUER = "bench"
AUDIENCE = "bench"
ROUNDS = 20_000
WARM_UP = 500


async def _measure(issuer: TokenIssuer, verifier: TokenVerifier) -> tuple[float, float]:
    token, _ = issuer.issue(user_id="u1", username="factory-1", user_type=UserType.FACTORY)
    for _ in range(WARM_UP):
        await verifier.verify(token)
    started = time.process_time()
    for _ in range(ROUNDS):
        await verifier.verify(token)
    cpu = time.process_time() - started
    return ROUNDS / cpu, cpu / ROUNDS * 1e6


def _hs256() -> tuple[TokenIssuer, TokenVerifier]:
    secret = "b" * 43
    return (
        TokenIssuer(
            algorithm="HS256", key=secret, ttl_seconds=86400, issuer=ISSUER, audience=AUDIENCE
        ),
        TokenVerifier(keys=[VerificationKey.hs256(secret)], issuer=ISSUER, audience=AUDIENCE),
    )


def _eddsa(folder: Path) -> tuple[TokenIssuer, TokenVerifier]:
    private, public = folder / "jwt.key", folder / "jwt.pub"
    write_key_pair(private, public)
    key = load_private_key(private)
    return (
        TokenIssuer(
            algorithm="EdDSA", key=key, ttl_seconds=86400, issuer=ISSUER, audience=AUDIENCE
        ),
        TokenVerifier(
            keys=[VerificationKey.ed25519(key.public_key())], issuer=ISSUER, audience=AUDIENCE
        ),
    )


@asynccontextmanager
async def _jwks_server(body: bytes) -> AsyncIterator[str]:
    """A local HTTP server answering every request with this JWK set."""
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/.well-known/jwks.json"


async def _eddsa_jwks(folder: Path) -> tuple[float, float]:
    issuer, _ = _eddsa(folder)
    key = load_private_key(folder / "jwt.key").public_key()
    async with _jwks_server(orjson.dumps({"keys": [ed25519_jwk(key)]})) as url:
        verifier = TokenVerifier(
            jwks=JwksKeys(url, refresh_seconds=3600), issuer=ISSUER, audience=AUDIENCE
        )
        await verifier.start()
        try:
            assert verifier.has_keys, "the JWKS server did not answer"
            return await _measure(issuer, verifier)
        finally:
            await verifier.aclose()


async def _all() -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        return {
            "HS256": await _measure(*_hs256()),
            "EdDSA, key file": await _measure(*_eddsa(Path(folder))),
            "EdDSA, JWKS_URL (cached)": await _eddsa_jwks(Path(folder)),
        }


def run() -> Iterator[str]:
    for name, (per_second, micros) in asyncio.run(_all()).items():
        yield (
            f"token verification {name}: {micros:.1f} µs of CPU each ({per_second:,.0f}/s a core) "
            f"({ROUNDS:,} verifications of one token: kid, signature, every claim)"
        )

"""Token verification per second: the work every relay Identify does (HS256 and EdDSA)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from shared.identity import UserType
from shared.keys import load_private_key, load_public_key, write_key_pair
from shared.tokens import TokenIssuer, TokenVerifier

ISSUER = "bench"
AUDIENCE = "bench"
ROUNDS = 20_000


def _measure(issuer: TokenIssuer, verifier: TokenVerifier) -> tuple[float, float]:
    token, _ = issuer.issue(user_id="u1", username="factory-1", user_type=UserType.FACTORY)
    for _ in range(500):
        verifier.verify(token)
    started = time.perf_counter()
    for _ in range(ROUNDS):
        verifier.verify(token)
    elapsed = time.perf_counter() - started
    return ROUNDS / elapsed, elapsed / ROUNDS * 1e6


def _hs256() -> tuple[TokenIssuer, TokenVerifier]:
    secret = "b" * 43
    common = {"issuer": ISSUER, "audience": AUDIENCE}
    return (
        TokenIssuer(algorithm="HS256", key=secret, ttl_seconds=86400, **common),
        TokenVerifier(algorithm="HS256", key=secret, **common),
    )


def _eddsa(folder: Path) -> tuple[TokenIssuer, TokenVerifier]:
    private, public = folder / "jwt.key", folder / "jwt.pub"
    write_key_pair(private, public)
    common = {"issuer": ISSUER, "audience": AUDIENCE}
    return (
        TokenIssuer(algorithm="EdDSA", key=load_private_key(private), ttl_seconds=86400, **common),
        TokenVerifier(algorithm="EdDSA", key=load_public_key(public), **common),
    )


def run() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        results = {"HS256": _measure(*_hs256()), "EdDSA": _measure(*_eddsa(Path(folder)))}
    for name, (per_second, micros) in results.items():
        yield (
            f"token verification {name}: {per_second:,.0f}/s, {micros:.1f} µs each "
            f"({ROUNDS:,} verifications of one token, signature + every claim)"
        )

"""The public keys of `JWKS_URL`, fetched without blocking the event loop and cached.

- The first fetch runs at start (`start()` waits for that one attempt); if it fails, the
  keys stay empty (`has_keys` false, every token refused) and a background task retries
  with a capped backoff until one succeeds.
- Then the set is fetched again every `JWKS_REFRESH_SECONDS`, so a key retired by the
  auth service stops being accepted, and at once when a token names an unknown `kid`, but
  at most once per `UNKNOWN_KID_REFETCH_SECONDS`: a flood of made-up kids costs the auth
  service one request per 30 s. Callers arriving during a fetch wait for it.
- A failed fetch (timeout, HTTP error, a body that is not a JWK set) keeps the last good
  set; every fetch has a timeout and a body-size limit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson

from shared.keys import VerificationKey, ed25519_from_jwk
from shared.logging import get_logger
from shared.tasks import cancel_all

log = get_logger(__name__)

UNKNOWN_KID_REFETCH_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 64
RETRY_INITIAL_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


class JwksError(Exception):
    """The JWK set could not be fetched or read."""


def parse_jwks(body: bytes) -> dict[str, VerificationKey]:
    """The EdDSA keys of a JWK set by kid; keys of other kinds are skipped."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JwksError("not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JWK set (no keys array)")
    if len(document["keys"]) > MAX_KEYS:
        raise JwksError(f"more than {MAX_KEYS} keys")
    keys = {}
    for jwk in document["keys"]:
        try:
            kid, key = ed25519_from_jwk(jwk)
        except ValueError as error:
            log.warning("jwks_key_skipped", reason=str(error))
            continue
        keys[kid] = VerificationKey(kid, "EdDSA", key)
    return keys


class JwksKeys:
    """The last good key set of one JWKS URL, kept fresh by one background task."""

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float,
        unknown_kid_refetch_seconds: float = UNKNOWN_KID_REFETCH_SECONDS,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self._refresh_seconds = refresh_seconds
        self._unknown_kid_refetch_seconds = unknown_kid_refetch_seconds
        self._timeout = timeout_seconds
        self.keys: dict[str, VerificationKey] = {}
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._fetching: asyncio.Task[bool] | None = None
        self._last_unknown_kid_fetch = -float("inf")

    @property
    def has_keys(self) -> bool:
        return bool(self.keys)

    async def start(self) -> None:
        """Try the first fetch (bounded by the timeout), then keep the set fresh."""
        self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        await self._fetch()
        self._task = asyncio.create_task(self._keep_fresh(), name="jwks-refresh")

    async def aclose(self) -> None:
        await cancel_all((self._task, self._fetching))
        if self._client is not None:
            await self._client.aclose()

    def get(self, kid: str) -> VerificationKey | None:
        return self.keys.get(kid)

    async def get_or_refetch(self, kid: str) -> VerificationKey | None:
        """The key named `kid`, fetching the set again if allowed (see the module docstring)."""
        if self._fetching is None:
            now = time.monotonic()
            if now - self._last_unknown_kid_fetch < self._unknown_kid_refetch_seconds:
                return self.keys.get(kid)
            self._last_unknown_kid_fetch = now
        await self._fetch()
        return self.keys.get(kid)

    async def _keep_fresh(self) -> None:
        retry = RETRY_INITIAL_SECONDS
        while True:
            if self.has_keys:
                retry = RETRY_INITIAL_SECONDS
                await asyncio.sleep(self._refresh_seconds)
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)
            await self._fetch()

    async def _fetch(self) -> bool:
        """One fetch at a time: a caller arriving during one waits for its outcome."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch_once(), name="jwks-fetch")
            self._fetching.add_done_callback(self._fetch_done)
        return await asyncio.shield(self._fetching)

    def _fetch_done(self, task: asyncio.Task[bool]) -> None:
        if self._fetching is task:
            self._fetching = None

    async def _fetch_once(self) -> bool:
        try:
            keys = parse_jwks(await self._download())
        except Exception as error:  # any failure keeps the last good set; cancellation passes
            log.warning(
                "jwks_fetch_failed",
                url=self.url,
                error=str(error) or type(error).__name__,
                kept_keys=len(self.keys),
            )
            return False
        if keys.keys() != self.keys.keys():
            log.info("jwks_keys_changed", url=self.url, kids=sorted(keys))
        self.keys = keys
        return True

    async def _download(self) -> bytes:
        assert self._client is not None, "start() first"
        async with asyncio.timeout(self._timeout):
            async with self._client.stream("GET", self.url) as response:
                if response.status_code != httpx.codes.OK:
                    raise JwksError(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
                return bytes(body)

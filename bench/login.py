"""Logins per second through the real auth service (uvicorn, SQLite), and what argon2 costs.

The password hash is argon2id with OWASP's minimum parameters (19 MiB, 2 iterations,
parallelism 1: `auth_service/core/security.py`), so a login's cost is argon2's.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from auth_service.core import security
from bench.cluster import SECRET, free_port, start_logged, wait_ready

USERNAME = "bench-admin"
PASSWORD = "bench-password-123"
LOGIN_SECONDS = 8.0
CONCURRENCY = 4
HASHES = 20
AUTH = str(Path(sys.executable).with_name("auth-service"))


def _argon2_milliseconds() -> float:
    password_hash = asyncio.run(security.hash_password(PASSWORD))
    started = time.perf_counter()
    for _ in range(HASHES):
        asyncio.run(security.verify_password(PASSWORD, password_hash))
    return (time.perf_counter() - started) / HASHES * 1000


async def _hammer(base_url: str) -> tuple[int, int, float]:
    ok = failed = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def worker(deadline: float) -> None:
            nonlocal ok, failed
            while time.perf_counter() < deadline:
                form = {"username": USERNAME, "password": PASSWORD}
                response = await client.post("/auth/token", data=form)
                if response.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(started + LOGIN_SECONDS) for _ in range(CONCURRENCY)))
        return ok, failed, time.perf_counter() - started


def run() -> Iterator[str]:
    yield (
        f"argon2id verify (m={security.ARGON2_MEMORY_COST_KIB} KiB, t={security.ARGON2_TIME_COST}, "
        f"p={security.ARGON2_PARALLELISM}): {_argon2_milliseconds():.1f} ms each, one thread"
    )
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        env = {
            **os.environ,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "JWT_SECRET": SECRET,
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
            "FIRST_ADMIN_USERNAME": USERNAME,
            "FIRST_ADMIN_PASSWORD": PASSWORD,
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        process = start_logged([AUTH, "serve"], workdir, env, port)
        try:
            wait_ready(process, f"http://127.0.0.1:{port}/readyz")
            ok, failed, elapsed = asyncio.run(_hammer(f"http://127.0.0.1:{port}"))
        finally:
            process.terminate()
            process.wait(timeout=30)
    yield (
        f"login (POST /auth/token, {CONCURRENCY} clients, SQLite): {ok / elapsed:.1f}/s "
        f"over {elapsed:.1f} s, {failed} failed"
    )

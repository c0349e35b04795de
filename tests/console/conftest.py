"""The real services the console talks to, and a headless Chromium driven by Playwright.

Every process runs with its working directory in a temporary folder (so the repository's
`.env` is not read) and an environment of its own; all are killed at teardown.
Chromium is Debian's (`/usr/bin/chromium`): Playwright cannot download browsers here.
Without Chromium or Playwright the tests skip, except under `CI`, where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.processes import ServiceProcess, console_script, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
ADMIN = "admin"
PASSWORD = "correct-horse-battery"
FACTORY = "factory-7"
OPERATOR = "operator"
PHONE = (375, 812)
WALL_SCREEN = (1920, 1080)
DESKTOP = (1280, 900)
LIVEKIT_SETTINGS = {
    "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",  # nothing listens there
    "LIVEKIT_API_KEY": "devkey",
    "LIVEKIT_API_SECRET": "secret-of-at-least-32-characters-long",
}
"""The second auth service's LiveKit: configured, but no LiveKit server runs."""
ADMIN_TOKEN_MARGIN_SECONDS = 5
"""`Stack.admin_headers` logs in again this close to the admin token's `exp` (short tokens)."""
HEARTBEAT_INTERVAL_MS = 1000
"""Short, so a console that does not heartbeat is closed (4009) within the tests."""


def missing(what: str, reason: str) -> None:
    message = f"the console tests need {what}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


@dataclass
class Stack:
    """The auth service, the relay and a factory bridge, all on loopback."""

    auth: ServiceProcess
    relay: ServiceProcess
    livekit_auth: ServiceProcess
    """A second auth service with LiveKit configured (its origin is allowed by the relay)."""
    bridge: ServiceProcess
    admin_token: str = ""

    @property
    def auth_url(self) -> str:
        return self.auth.http_url

    @property
    def relay_ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.relay.port}/ws"

    def console_url(self, auth_url: str | None = None) -> str:
        """The console; it learns where the relay is from its server (`RELAY_PUBLIC_URL`)."""
        return f"{auth_url or self.auth_url}/console/"

    def start_livekit_auth(self) -> str:
        """Start the second auth service, LiveKit configured (once); returns its URL."""
        if not self.livekit_auth.running:
            self.livekit_auth.settings.update(LIVEKIT_SETTINGS)
            self.livekit_auth.start()
        return self.livekit_auth.http_url

    def log_in_admin(self) -> None:
        login = httpx.post(
            f"{self.auth_url}/auth/token", data={"username": ADMIN, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        self.admin_token = login.json()["access_token"]

    def admin_headers(self) -> dict[str, str]:
        """The admin's bearer header, logging in again once the token is near its `exp`."""
        payload = self.admin_token.split(".")[1] if self.admin_token else ""
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) or "{}")
        if claims.get("exp", 0) - ADMIN_TOKEN_MARGIN_SECONDS < time.time():
            self.log_in_admin()
        return {"Authorization": f"Bearer {self.admin_token}"}

    def create_user(self, username: str, user_type: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.auth_url}/users",
            json={"username": username, "password": PASSWORD, "type": user_type},
            headers=self.admin_headers(),
        )
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        return user

    def patch_user(self, user_id: str, **changes: object) -> None:
        response = httpx.patch(
            f"{self.auth_url}/users/{user_id}",
            json=changes,
            headers=self.admin_headers(),
        )
        assert response.status_code == 200, response.text

    def kill_all(self) -> None:
        for process in (self.bridge, self.relay, self.livekit_auth, self.auth):
            process.kill()


def build_stack(workdir: Path, redis_url: str, **settings: str) -> Stack:
    """The processes of a stack, not started; `settings` go to every service."""
    common = {
        "JWT_SECRET": secrets.token_urlsafe(32),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-console-{uuid.uuid4().hex[:12]}",
        "DATABASE_URL": f"sqlite:///{workdir / 'auth.db'}",
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": PASSWORD,
        "LOG_LEVEL": "INFO",
        **settings,
    }
    auth_command = [console_script("auth-service"), "serve"]
    auth = ServiceProcess(auth_command, workdir, name="auth", settings=common)
    livekit_auth = ServiceProcess(auth_command, workdir, name="auth-livekit", settings=common)
    origins = f"{auth.http_url},{livekit_auth.http_url}"
    relay = ServiceProcess(
        [console_script("relay-service")],
        workdir,
        name="relay",
        settings={
            **common,
            "CORS_ORIGINS": origins,
            "HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_INTERVAL_MS),
        },
    )
    for service in (auth, livekit_auth):
        service.settings["CORS_ORIGINS"] = origins
        service.settings["RELAY_PUBLIC_URL"] = f"ws://127.0.0.1:{relay.port}/ws"
    bridge = bridge_process(workdir, relay, auth, FACTORY)
    return Stack(auth, relay, livekit_auth, bridge)


def bridge_process(
    workdir: Path, relay: ServiceProcess, auth: ServiceProcess, username: str
) -> ServiceProcess:
    """A simulated factory (`factory-bridge`) logged in as `username`, not started; its own
    `workdir` keeps its state apart from another bridge's."""
    return ServiceProcess(
        [console_script("factory-bridge")],
        workdir,
        name=f"bridge-{username}",
        settings={
            "BRIDGE_RELAY_URL": f"ws://127.0.0.1:{relay.port}/ws",
            "BRIDGE_AUTH_URL": auth.http_url,
            "BRIDGE_USERNAME": username,
            "BRIDGE_PASSWORD": PASSWORD,
            "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
        },
        http=False,
    )


def start_stack(stack: Stack, *, bridge: bool = True) -> None:
    """Start the auth service, create the operator and the factory, start the relay (and bridge)."""
    stack.auth.start()
    stack.log_in_admin()
    stack.create_user(OPERATOR, "operator")
    stack.create_user(FACTORY, "factory")
    stack.relay.start()
    if bridge:
        stack.bridge.start()


@pytest.fixture(scope="package")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = build_stack(tmp_path_factory.mktemp("console"), redis_url)
    try:
        start_stack(stack)
        yield stack
    finally:
        stack.kill_all()


SHORT_TOKEN_TTL_SECONDS = 24
"""`ACCESS_TOKEN_TTL_SECONDS` of `short_lived_stack`: the console asks for the password a
quarter of that before `exp` (6 s), and the relay ends a session at `exp`."""


@pytest.fixture(scope="package")
def short_lived_stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An auth service and a relay with tokens of `SHORT_TOKEN_TTL_SECONDS`; no bridge."""
    stack = build_stack(
        tmp_path_factory.mktemp("console-short"),
        redis_url,
        ACCESS_TOKEN_TTL_SECONDS=str(SHORT_TOKEN_TTL_SECONDS),
    )
    try:
        start_stack(stack, bridge=False)
        yield stack
    finally:
        stack.kill_all()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file() and shutil.which("chromium") is None:
        missing("Chromium", f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as error:
        missing("Playwright for Python", f"{error} (pip install -e '.[dev]')")
    executable = CHROMIUM if Path(CHROMIUM).is_file() else str(shutil.which("chromium"))
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Error as error:
            missing("a Chromium that starts", str(error).splitlines()[0])
        yield launched
        launched.close()


EXPECT_TIMEOUT_MS = 15_000


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    try:
        from playwright.sync_api import expect
    except ImportError:
        return
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@dataclass
class Console:
    """One browser tab on the console, with its uncaught errors and a screenshot helper."""

    page: Page
    errors: list[str]

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def resize(self, size: tuple[int, int]) -> None:
        width, height = size
        self.page.set_viewport_size({"width": width, "height": height})

    def new_tab(self) -> Page:
        """Another tab of the same browser profile (its sessionStorage starts empty)."""
        page = self.page.context.new_page()
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page


@pytest.fixture
def console(browser: Browser) -> Iterator[Console]:
    """A tab at 1280 x 900 (`Console.resize` for phones and wall screens)."""
    width, height = DESKTOP
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield Console(page, errors)
    finally:
        context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"

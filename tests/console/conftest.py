"""The real services the console talks to, and a headless Chromium driven by Playwright.

Every process runs with its working directory in a temporary folder (so the repository's
`.env` is not read) and an environment of its own; all are killed at teardown.
Chromium is Debian's (`/usr/bin/chromium`): Playwright cannot download browsers here.
Without Chromium or Playwright the tests skip, except under `CI`, where they fail.
"""

from __future__ import annotations

import os
import secrets
import shutil
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

    def create_user(self, username: str, user_type: str) -> dict[str, Any]:
        response = httpx.post(
            f"{self.auth_url}/users",
            json={"username": username, "password": PASSWORD, "type": user_type},
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code == 201, response.text
        user: dict[str, Any] = response.json()
        return user

    def patch_user(self, user_id: str, **changes: object) -> None:
        response = httpx.patch(
            f"{self.auth_url}/users/{user_id}",
            json=changes,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        assert response.status_code == 200, response.text

    def kill_all(self) -> None:
        for process in (self.bridge, self.relay, self.livekit_auth, self.auth):
            process.kill()


@pytest.fixture(scope="package")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("console")
    common = {
        "JWT_SECRET": secrets.token_urlsafe(32),
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-console-{uuid.uuid4().hex[:12]}",
        "DATABASE_URL": f"sqlite:///{workdir / 'auth.db'}",
        "FIRST_ADMIN_USERNAME": ADMIN,
        "FIRST_ADMIN_PASSWORD": PASSWORD,
        "LOG_LEVEL": "INFO",
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
    bridge = ServiceProcess(
        [console_script("factory-bridge")],
        workdir,
        name="bridge",
        settings={
            "BRIDGE_RELAY_URL": f"ws://127.0.0.1:{relay.port}/ws",
            "BRIDGE_AUTH_URL": auth.http_url,
            "BRIDGE_USERNAME": FACTORY,
            "BRIDGE_PASSWORD": PASSWORD,
            "BRIDGE_STATUS_INTERVAL_SECONDS": "0.2",
        },
        http=False,
    )
    stack = Stack(auth, relay, livekit_auth, bridge)
    try:
        auth.start()
        login = httpx.post(
            f"{stack.auth_url}/auth/token", data={"username": ADMIN, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        stack.admin_token = login.json()["access_token"]
        stack.create_user(OPERATOR, "operator")
        stack.create_user(FACTORY, "factory")
        relay.start()
        bridge.start()
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

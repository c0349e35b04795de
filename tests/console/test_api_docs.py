"""The auth service's API docs (Swagger UI) render in headless Chromium offline.

Every request the page makes to a host other than 127.0.0.1 is aborted and recorded, as
on an air-gapped factory network; screenshots go to `artifacts/console/`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.console.conftest import Console
from tests.processes import ServiceProcess, console_script

try:
    from playwright.sync_api import Page, Route, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI"):
        raise
    pytest.skip(
        "the console tests need Playwright (pip install -e '.[dev]')", allow_module_level=True
    )

LOOPBACK = "127.0.0.1"
OPERATION_SUMMARY = "Log in with the OAuth2 password form"
"""The summary of `POST /auth/token`: shown once the page has read the OpenAPI document."""


@pytest.fixture(scope="module")
def auth_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: Path = tmp_path_factory.mktemp("api-docs")
    auth = ServiceProcess(
        [console_script("auth-service"), "serve"],
        workdir,
        name="auth",
        settings={
            "JWT_SECRET": secrets.token_urlsafe(32),
            "DATABASE_URL": f"sqlite:///{workdir / 'auth.db'}",
            "LOG_LEVEL": "INFO",
        },
    )
    try:
        auth.start()
        yield auth.http_url
    finally:
        auth.kill()


def offline(page: Page) -> list[str]:
    """Abort every request to another host; returns the list of those attempted."""
    outside: list[str] = []

    def route(route: Route) -> None:
        if urlsplit(route.request.url).hostname == LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return outside


def test_swagger_ui_renders_without_internet(console: Console, auth_url: str) -> None:
    outside = offline(console.page)
    console.page.goto(f"{auth_url}/docs")
    expect(console.page.get_by_text(OPERATION_SUMMARY)).to_be_visible()
    expect(console.page.get_by_role("button", name="Authorize")).to_be_visible()
    console.page.wait_for_load_state("networkidle")
    console.screenshot("api-docs-swagger-ui")
    assert outside == []


def test_the_root_opens_the_console_with_its_icon(console: Console, auth_url: str) -> None:
    outside = offline(console.page)
    console.page.goto(auth_url)
    assert console.page.url == f"{auth_url}/console/"
    href = console.page.locator('link[rel="icon"]').get_attribute("href")
    assert href is not None
    icon = console.page.context.request.get(f"{auth_url}{href}")
    assert (icon.status, icon.headers["content-type"]) == (200, "image/x-icon")
    assert outside == []

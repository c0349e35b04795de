"""The default `RELAY_PUBLIC_URL` (`/ws`, the console's own origin) behind the deployment's
nginx, which routes `/ws` to the relays and the rest to the auth service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.console.conftest import Console
from tests.console.pages import expect
from tests.deploy.stack import ADMIN_PASSWORD, ADMIN_USERNAME, Stack, require_nginx

pytestmark = pytest.mark.redis


@pytest.fixture
def balanced(redis_url: str, redis_prefix: str) -> Iterator[Stack]:
    stack = Stack(require_nginx(), redis_url, redis_prefix)
    stack.auth_settings["CORS_ORIGINS"] = stack.lb_url  # the console's origin: the balancer's
    stack.relay_settings["CORS_ORIGINS"] = stack.lb_url
    with stack as running:
        yield running


def test_the_default_relay_is_the_consoles_own_origin(console: Console, balanced: Stack) -> None:
    page = console.page
    page.goto(f"{balanced.lb_url}/console/")
    expect(page.locator("#relay-url")).to_have_text(balanced.ws_url)
    page.fill("#username", ADMIN_USERNAME)
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#connection")).to_have_attribute("data-state", "ready")
    policy = httpx.get(f"{balanced.lb_url}/console/").headers["content-security-policy"]
    assert "connect-src 'self';" in policy  # nothing but the page's own origin

"""Who is logged in: the token survives a reload (sessionStorage) but not a logout or a
new tab; a factory account is sent to factory-bridge; login errors say things once."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.conftest import FACTORY, OPERATOR, PASSWORD, Console, Stack
from tests.console.pages import Page, expect, factory_row, log_in

pytestmark = pytest.mark.redis

TOKEN_KEY = "factory-relay.token"
MAX_ATTEMPTS_BEFORE_THROTTLE = 30
"""Far above the per-(username, address) limit: the test only needs to reach a 429."""


def stored_token(page: Page) -> str | None:
    token: str | None = page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})")
    return token


def test_a_reload_keeps_the_session(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    assert stored_token(page)
    page.reload()
    expect(page.locator("#console-view")).to_be_visible()
    expect(page.locator("#login-view")).to_be_hidden()
    expect(page.locator("#whoami")).to_have_text(f"{OPERATOR} (operator)")
    expect(page.locator("#connection")).to_have_attribute("data-state", "ready")
    expect(factory_row(page)).to_be_visible()


def test_logout_forgets_the_token(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    token = stored_token(page)
    page.click("#logout")
    expect(page.locator("#login-view")).to_be_visible()
    assert stored_token(page) is None
    page.reload()
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#console-view")).to_be_hidden()
    me = httpx.get(f"{stack.auth_url}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401  # logged out on the server too


def test_a_new_tab_asks_to_log_in(console: Console, stack: Stack) -> None:
    log_in(console.page, stack, OPERATOR)
    tab = console.new_tab()
    tab.goto(stack.console_url())
    expect(tab.locator("#login-view")).to_be_visible()
    expect(tab.locator("#console-view")).to_be_hidden()
    assert stored_token(tab) is None


def test_a_revoked_stored_token_asks_to_log_in_again(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, OPERATOR)
    token = stored_token(page)
    page.goto("about:blank")  # the tab's sessionStorage stays; the console is closed
    revoked = httpx.post(
        f"{stack.auth_url}/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert revoked.status_code == 204
    page.goto(stack.console_url())
    expect(page.locator("#login-view")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Session expired: log in again.")
    assert stored_token(page) is None


def test_a_factory_account_is_told_about_factory_bridge(console: Console, stack: Stack) -> None:
    page = console.page
    log_in(page, stack, FACTORY, ready=False)
    notice = page.locator("#factory-view")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(FACTORY)
    expect(notice).to_contain_text("factory-bridge")
    expect(page.locator("#console-view")).to_be_hidden()
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "ready")
    console.screenshot("12-factory-account")


def test_a_throttled_login_says_it_once(console: Console, stack: Stack) -> None:
    for _ in range(MAX_ATTEMPTS_BEFORE_THROTTLE):
        refused = httpx.post(
            f"{stack.auth_url}/auth/token", data={"username": "locked-out", "password": "x" * 8}
        )
        if refused.status_code == 429:
            break
    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    page = console.page
    log_in(page, stack, "locked-out", password=PASSWORD, ready=False)
    error = page.locator("#login-error")
    expect(error).to_have_text(re.compile(r"Next attempt in \d+ (s|min)\.$"))
    text = error.inner_text()
    assert text.lower().count(detail.lower().rstrip(".")) == 1, (detail, text)
    assert text[0].isupper()
    console.screenshot("02-throttled")

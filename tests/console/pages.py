"""What the console tests do in the page: log in, find a factory's reading, send a command."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from tests.console.conftest import FACTORY, PASSWORD, Stack

try:
    from playwright.sync_api import Page, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    if os.environ.get("CI"):
        raise
    pytest.skip(
        "the console tests need Playwright (pip install -e '.[dev]')", allow_module_level=True
    )

__all__ = ["Page", "answer", "cell", "expect", "factory_row", "log_in", "send_command"]


def log_in(
    page: Page,
    stack: Stack,
    username: str,
    *,
    auth_url: str | None = None,
    password: str = PASSWORD,
    ready: bool = True,
) -> None:
    """Open the console and log in; with `ready`, wait for the relay session."""
    page.goto(stack.console_url(auth_url))
    expect(page.locator("#relay-url")).not_to_have_text("…")  # the configuration arrived
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    if ready:
        expect(page.locator("#console-view")).to_be_visible()
        expect(page.locator("#connection")).to_have_attribute("data-state", "ready")


def factory_row(page: Page, factory: str = FACTORY) -> Any:
    return page.locator(f'#factories tbody tr[data-factory="{factory}"]')


def cell(page: Page, key: str, factory: str = FACTORY) -> Any:
    """A factory's value for a status key (or its `last-seen` cell)."""
    return factory_row(page, factory).locator(f'[data-key="{key}"]')


def send_command(page: Page, action: str, rpm: int | None = None, target: str = FACTORY) -> str:
    """Fill and submit the command form; returns the id the console gave the command."""
    page.select_option("#command-target", target)
    page.select_option("#command-action", action)
    if rpm is not None:
        page.fill("#command-rpm", str(rpm))
    sent = page.locator('#event-log li[data-kind="command"]')
    before = sent.count()
    expect(page.locator("#command-send")).to_be_enabled()
    page.click("#command-send")
    expect(sent).to_have_count(before + 1)
    command_id = sent.first.get_attribute("data-command-id")
    assert command_id is not None
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", command_id)
    return command_id


def answer(page: Page, command_id: str) -> Any:
    return page.locator(f'#event-log li[data-command-id="{command_id}"]:not([data-kind="command"])')

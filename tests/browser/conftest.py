"""One headless Chromium for the browser tests of this folder (skipped, saying how to get one,
on a machine without Chromium)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.browser import HOW_TO_GET_ONE, SCREENSHOTS, chromium_path, launch


@pytest.fixture(scope="package")
def browser_context(tmp_path_factory) -> Iterator[tuple[object, list[str]]]:
    """(context, blocked): a Chromium context with a fresh profile, and the list of requests it
    refused because they left this machine (the tests assert it stays empty)."""
    if chromium_path() is None:
        pytest.skip(HOW_TO_GET_ONE)
    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    blocked: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"), blocked)
        try:
            yield context, blocked
        finally:
            context.close()


@pytest.fixture
def page(browser_context):
    """A new tab; console errors of the page are collected on ``page.console_errors``."""
    context, _ = browser_context
    tab = context.new_page()
    tab.set_default_timeout(120_000)  # a cold server compiles on first use, on a busy machine
    tab.console_errors = []
    tab.on("console", lambda message: tab.console_errors.append(message.text)
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))
    yield tab
    tab.close()

"""The API docs work on a server without internet: /docs (Swagger UI) and /redoc (ReDoc) load every
asset from the service and show every operation of the OpenAPI document."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.browser import HOW_TO_GET_ONE, SCREENSHOTS, chromium_path

# A real server and a real browser (skipped, saying how to get one, where there is none)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium_path() is None, reason=HOW_TO_GET_ONE)]

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(url: str) -> list[tuple[str, str]]:
    document = httpx.get(f"{url}/openapi.json").json()
    return sorted((method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in METHODS)


def test_swagger_ui_shows_every_operation_offline(live_server, page, browser_context):
    _, blocked = browser_context
    expected = operations(live_server)
    page.goto(f"{live_server}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    shown = sorted(
        (block.query_selector(".opblock-summary-method").inner_text().strip(),
         block.query_selector(".opblock-summary-path").get_attribute("data-path"))
        for block in page.query_selector_all(".opblock"))
    page.screenshot(path=str(SCREENSHOTS / "docs.png"))
    assert shown == expected
    assert page.inner_text(".info .title").startswith("labcrunch")
    assert blocked == [], "the docs page asked for something outside this machine"
    assert page.console_errors == []


def test_redoc_shows_every_operation_offline(live_server, page, browser_context):
    _, blocked = browser_context
    expected = operations(live_server)
    page.goto(f"{live_server}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    shown = page.query_selector_all("[data-section-id^='operation/']")
    page.screenshot(path=str(SCREENSHOTS / "redoc.png"))
    assert len(shown) == len(expected)
    assert blocked == [], "the ReDoc page asked for something outside this machine"


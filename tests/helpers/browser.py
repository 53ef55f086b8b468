"""Headless Chromium for the browser tests: the system's browser (Debian's ``chromium``, or the one
``LABCRUNCH_CHROMIUM`` names) driven by Playwright, never a browser downloaded at run time, and a
context that can reach nothing but loopback addresses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from tests.helpers import ROOT

SCREENSHOTS = ROOT / "tests" / "browser" / "screenshots"  # listed in .gitignore

HOW_TO_GET_ONE = ("browser tests need Chromium: `apt-get install -y chromium chromium-driver` "
                  "(Debian/Ubuntu; .ci/run does it), or set LABCRUNCH_CHROMIUM to a Chromium "
                  "executable")

# Headless, and quiet: without the background-networking flags Chromium keeps calling home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    """The Chromium to drive, or None when this machine has none."""
    named = os.environ.get("LABCRUNCH_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def is_loopback(url: str) -> bool:
    """data:, blob: and about: URLs stay in the page; http(s) only to this machine."""
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    return parts.hostname in ("127.0.0.1", "localhost", "::1")


def launch(playwright, user_data_dir: Path, blocked: list[str]):
    """A persistent Chromium context (its own fresh profile) whose every request to anywhere but
    loopback is refused and recorded in ``blocked``."""
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900}, device_scale_factor=1)

    def refuse(route) -> None:
        blocked.append(route.request.url)
        route.abort("internetdisconnected")

    context.route(lambda url: not is_loopback(url), refuse)
    return context

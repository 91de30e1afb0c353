"""Browser tests: Playwright's sync API driving Debian's Chromium against pytest-django's
live server (which also serves the static files).

No browser is ever downloaded: the tests use /usr/bin/chromium (``make browser`` installs it
with apt-get). Where it is missing they skip, except in CI (CAGVLM_REQUIRE_FIXTURES=1), where
they fail and say so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import REPO_ROOT

CHROMIUM = Path(os.environ.get("CAGVLM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture
def chromium_path() -> Path:
    if not CHROMIUM.is_file():
        message = f"Chromium not found at {CHROMIUM}; `make browser` installs Debian's chromium"
        if os.environ.get("CAGVLM_REQUIRE_FIXTURES") == "1":
            pytest.fail(message + " (CAGVLM_REQUIRE_FIXTURES=1)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def browser(chromium_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A headless Chromium for one test.

    Playwright's sync API keeps an asyncio loop in this thread, and Django refuses ORM calls
    from a thread with a running loop; the test's own database calls are plain synchronous
    code, so the guard is lifted for the test's duration. Inside Playwright's context Django
    also hands out a connection of its own, which is closed here before the context ends:
    left open, it keeps PostgreSQL from dropping the test database at the end of the run.
    """
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            connections.close_all()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="en-GB")
    context.set_default_timeout(30_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.js_errors = errors
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go: test-artifacts/ at the repository root (ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def log_in(page, live_server, username: str, password: str) -> None:
    """Log in through the login form, as a person would."""
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form.stacked-form button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)

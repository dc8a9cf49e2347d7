"""`/docs` works offline: headless Chromium opens it from a real `touchpoint serve`, every
request that leaves the server is refused, and Swagger UI still lists the operations."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from touchpoint.config.settings import Settings
from touchpoint.testing import ServerProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
        reason="Chromium is not installed (CI installs it: apt-get install chromium)",
    ),
]


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerProcess]:
    running = ServerProcess(settings.data_dir, "--config", str(settings.config_path)).start()
    try:
        yield running
    finally:
        running.stop()


def test_swagger_ui_lists_the_operations_with_no_network(server: ServerProcess) -> None:
    from playwright.sync_api import Route, sync_playwright

    refused: list[str] = []

    def only_this_server(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == urlsplit(server.url).netloc:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()
            page.route("**/*", only_this_server)
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            title = page.locator(".information-container .title").inner_text()
        finally:
            browser.close()
    assert refused == []
    assert "Touchpoint" in title
    assert {"/v1/batch", "/v1/decide", "/v1/profiles/{kind}/{value}"} <= {
        path.replace("\u200b", "").strip() for path in paths
    }

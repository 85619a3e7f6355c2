"""What the browser tests share: Debian's Chromium driven by Playwright, pages that must have no
uncaught error, and screenshots saved under test-artifacts/."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cli.processes import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: no GPU, no sandbox (containers), and none of the browser's own traffic.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup --test")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(page: Page, url: str) -> Page:
    page.uncaught_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.uncaught_errors.append(str(error)))  # type: ignore[attr-defined]
    # Whatever the page's Content-Security-Policy refused counts as an error too.
    page.on("console", lambda message: page.uncaught_errors.append(message.text)  # type: ignore[attr-defined]
            if "Content Security Policy" in message.text else None)
    # Playwright turns on file-chooser interception only while someone listens, and it does so
    # without waiting: `expect_file_chooser()` followed at once by a key press can open the
    # chooser before interception is on, and the event never comes. A listener kept for the
    # page's whole life turns it on here, many round trips before any test opens a chooser.
    page.on("filechooser", lambda chooser: None)
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("data-ready", "true")
    return page


PageFactory = Callable[..., Page]


@pytest.fixture
def pages(browser: Browser) -> Iterator[PageFactory]:
    """Opens pages of the portal; at teardown each is closed, and none may have had an uncaught error
    or anything refused by the page's policy."""
    opened: list[Page] = []

    def factory(url: str, width: int = 1100, height: int = 800) -> Page:
        opened.append(browser.new_page(viewport={"width": width, "height": height}))
        return open_page(opened[-1], url)

    yield factory
    errors = [getattr(page, "uncaught_errors", []) for page in opened]
    for page in opened:
        page.close()
    assert errors == [[] for _ in opened]


def save_screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-artifacts/, reduced to a palette so that it stays small."""
    ARTIFACTS.mkdir(exist_ok=True)
    image = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    path = ARTIFACTS / name
    image.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path

"""A session in the portal, in a real browser against the real gateway and worker: started from the page,
two jobs run in it, the page reloaded from the session's address shows both with their thumbnails and
results, a third job continues it, and it exports as CSV; on a phone-sized screen too."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from cli.pipeline import LocalPipeline
from tests.browser.conftest import PageFactory, save_screenshot
from tests.support import images

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

RESULT_TIMEOUT_MS = 90_000
GENERIC = "#model-mobilenet_v2"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("session-uploads")
    made = {f"step-{i}.jpg": images.jpeg(320, 240, seed=61_000 + i) for i in range(1, 4)}
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made}


def entries(page: Page) -> list[dict[str, str]]:
    return page.locator(".session-entry").evaluate_all(
        "els => els.map(e => ({file: e.querySelector('.session-file').textContent, status: e.dataset.status,"
        " thumb: e.querySelector('img.session-thumb') ? 'yes' : 'no'}))")


def send(page: Page, path: Path) -> None:
    page.set_input_files(f"{GENERIC} .file-input", [path])


def expect_history(page: Page, names: list[str]) -> None:
    expect(page.locator(".session-entry[data-status=succeeded]")).to_have_count(len(names), timeout=RESULT_TIMEOUT_MS)
    assert entries(page) == [{"file": name, "status": "succeeded", "thumb": "yes"} for name in names]
    for result in page.locator(".session-result").all_text_contents():
        assert result.endswith("%")  # "<label> · <score> %"


def test_a_session_is_started_reopened_from_its_address_continued_and_exported(
        pages: PageFactory, pipeline: LocalPipeline, files: dict[str, Path]) -> None:
    page = pages(pipeline.url)
    expect(page.locator("#session-state")).to_contain_text("Not in a session")
    page.locator("#session-start").click()
    expect(page).to_have_url(re.compile(r"[?&]session=[0-9a-f-]{36}$"))
    session_id = page.evaluate("new URL(location.href).searchParams.get('session')")
    send(page, files["step-1.jpg"])
    # A session lists its jobs in the order the gateway accepted them: two uploads in flight at once
    # may be accepted either way round, so the second goes once the first is in the list.
    expect(page.locator(".session-entry")).to_have_count(1, timeout=RESULT_TIMEOUT_MS)
    send(page, files["step-2.jpg"])
    expect_history(page, ["step-1.jpg", "step-2.jpg"])

    page.goto(f"{pipeline.url}/?session={session_id}")  # reopened from its address
    expect(page.locator("html")).to_have_attribute("data-ready", "true")
    expect_history(page, ["step-1.jpg", "step-2.jpg"])
    expect(page.locator("#session-state")).to_contain_text(f"Session {session_id[:8]} · 2 images")
    send(page, files["step-3.jpg"])  # continues it
    expect_history(page, ["step-1.jpg", "step-2.jpg", "step-3.jpg"])

    with page.expect_download() as download:
        page.locator("#session-export-csv").click()
    assert download.value.suggested_filename == f"session-{session_id}.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(row["filename"], row["status"]) for row in rows] == [
        (f"step-{i}.jpg", "succeeded") for i in range(1, 4)]
    save_screenshot(page, "portal-session.png")

    page.locator("#session-leave").click()
    expect(page).to_have_url(re.compile(r"^[^?]*$"))
    expect(page.locator(".session-entry")).to_have_count(0)


def test_a_session_on_a_narrow_screen(pages: PageFactory, pipeline: LocalPipeline, files: dict[str, Path]) -> None:
    page = pages(pipeline.url, width=375, height=800)
    page.locator("#session-start").click()
    send(page, files["step-1.jpg"])
    expect_history(page, ["step-1.jpg"])

    width, viewport = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= viewport == 375
    for box in page.locator(".session, .session-entry").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().right)"):
        assert box <= 375

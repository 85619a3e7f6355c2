"""The generic panel of the portal in a real browser (Debian's Chromium driven by Playwright), against the real
gateway and worker: pick and drop files, follow them live, read results and errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT
from tests.browser.conftest import PageFactory, save_screenshot
from tests.conftest import PipelineFactory
from tests.support import images

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

RESULT_TIMEOUT_MS = 90_000


@pytest.fixture
def page(pages: PageFactory, pipeline: LocalPipeline) -> Page:
    return pages(pipeline.url)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    made = {
        "tabby-on-the-sofa.jpg": images.jpeg(640, 480, seed=31),
        "harbour-at-dusk.png": images.encode(images.picture(400, 300, seed=32), "PNG"),
        "a-photo-with-an-unusually-long-file-name-that-must-wrap-on-a-phone-screen.jpg": images.jpeg(300, 200, seed=33),
        "retried.jpg": images.jpeg(320, 200, seed=34),
        "fallback.jpg": images.jpeg(320, 210, seed=35),
        "keyed.jpg": images.jpeg(320, 220, seed=36),
        "in-line.jpg": images.jpeg(320, 230, seed=37),
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made}


GENERIC = "#model-mobilenet_v2"  # the default model ships no panel of its own: the generic one


def card(page: Page, file_name: str) -> Locator:
    return page.locator(".card", has=page.locator(".file-name", has_text=file_name))


def expect_done_with_predictions(page: Page, file_name: str, count: int = 5) -> None:
    item = card(page, file_name)
    expect(item.locator(".badge")).to_have_text("Done", timeout=RESULT_TIMEOUT_MS)
    expect(item.locator(".predictions li")).to_have_count(count)
    expect(item.locator(".in-line")).to_be_hidden()  # a place in line is shown while queued only
    expect(item.locator(".prediction-score").first).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(item.locator(".problem")).to_be_hidden()


def drop_text_file(page: Page, name: str, text: str) -> None:
    """What a drag from the desktop delivers: a drop event carrying the file."""
    page.evaluate(
        """([name, text]) => {
            const data = new DataTransfer();
            data.items.add(new File([text], name, {type: "text/plain"}));
            const zone = document.querySelector("#model-mobilenet_v2 .drop-zone");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
            }
        }""",
        [name, text],
    )


def test_keyboard_pick_and_drop_then_live_results_and_a_readable_error(page: Page, files: dict[str, Path]) -> None:
    zone = page.locator(f"{GENERIC} .drop-zone")
    for _ in range(8):  # past the model links, the API key field and the session button
        page.keyboard.press("Tab")
        if zone.evaluate("el => el === document.activeElement"):
            break
    expect(zone).to_be_focused()
    assert zone.evaluate("el => getComputedStyle(el).boxShadow") != "none", "no visible focus"
    save_screenshot(page, "web-page-focus.png")

    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files([files["tabby-on-the-sofa.jpg"], files["harbour-at-dusk.png"]])
    drop_text_file(page, "shopping-list.txt", "eggs, flour, milk")

    expect_done_with_predictions(page, "tabby-on-the-sofa.jpg")
    expect_done_with_predictions(page, "harbour-at-dusk.png")
    bad = card(page, "shopping-list.txt")
    expect(bad.locator(".badge")).to_have_text("Failed")
    expect(bad.locator(".problem-text")).to_have_text("This file isn't an image we can read. Use a JPEG, PNG, WebP, BMP or GIF file.")
    expect(bad.locator(".problem-detail")).to_contain_text("text/plain")
    expect(bad.locator(".predictions")).to_be_hidden()
    expect(card(page, "tabby-on-the-sofa.jpg").locator(".meta")).to_have_text("52 KB · 640×480")
    expect(page.locator(f"{GENERIC} .summary")).to_have_text("3 images · 2 done · 1 failed")
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#announcer p")).not_to_have_count(0)  # status changes are spoken

    with page.expect_file_chooser() as chooser:
        zone.focus()
        page.keyboard.press("Space")
    chooser.value.set_files([])

    page.evaluate("document.activeElement.blur()")
    page.mouse.move(0, 0)
    shutil.copyfile(save_screenshot(page, "web-page.png"), REPO_ROOT / "docs" / "web-page.png")


def test_a_narrow_screen_has_no_horizontal_overflow(pages: PageFactory, pipeline: LocalPipeline, files: dict[str, Path]) -> None:
    page = pages(pipeline.url, width=375, height=800)
    long_name = next(name for name in files if name.startswith("a-photo-with"))
    page.set_input_files(f"{GENERIC} .file-input", [files[long_name]])
    drop_text_file(page, "shopping-list.txt", "eggs")

    expect_done_with_predictions(page, long_name)
    expect(card(page, "shopping-list.txt").locator(".problem")).to_be_visible()
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= viewport == 375
    for selector in [".card", ".drop-zone", ".problem", ".panel", ".quick-look"]:
        for box in page.locator(selector).evaluate_all("els => els.map(e => e.getBoundingClientRect().right)"):
            assert box <= 375
    save_screenshot(page, "web-page-narrow.png")


def test_a_busy_server_is_retried_after_retry_after(page: Page, files: dict[str, Path]) -> None:
    answered: list[int] = []

    def busy_once(route: Route) -> None:
        if not answered:
            answered.append(429)
            route.fulfill(status=429, headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                          body='{"status": 429, "title": "Too many queued jobs", "detail": "10,000 jobs are waiting"}')
        else:
            answered.append(0)
            route.continue_()

    page.route("**/v1/jobs?*", busy_once)
    page.set_input_files(f"{GENERIC} .file-input", [files["retried.jpg"]])

    expect(card(page, "retried.jpg").locator(".badge")).to_have_text("Waiting to retry")
    expect(card(page, "retried.jpg").locator(".problem-text")).to_contain_text("Trying again in 1 s")
    expect_done_with_predictions(page, "retried.jpg")
    assert answered == [429, 0]


def test_a_failing_event_stream_falls_back_to_long_polling(page: Page, files: dict[str, Path]) -> None:
    streams: list[str] = []

    def refuse_stream(route: Route) -> None:
        streams.append(route.request.url)
        route.fulfill(status=503, headers={"Content-Type": "application/problem+json"}, body='{"status": 503}')

    page.route("**/v1/jobs/*/events*", refuse_stream)
    page.set_input_files(f"{GENERIC} .file-input", [files["fallback.jpg"]])

    expect_done_with_predictions(page, "fallback.jpg")
    assert len(streams) == 1


def test_with_api_keys_the_page_sends_the_key(make_pipeline: PipelineFactory, pages: PageFactory,
                                              files: dict[str, Path]) -> None:
    # `pages` after `make_pipeline`: the page is checked and closed before the gateway stops.
    gateway = make_pipeline(workers=0, ASYNCINFER_API_KEYS="page-key:team-a")
    page = pages(gateway.url)
    streams: list[tuple[str, int]] = []
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on("response", lambda r: streams.append((r.url, r.status)) if "/events" in r.url else None)

    expect(page.locator("#shell-problem")).to_have_text("This server needs an API key. Enter it above to see its models.")
    expect(page.locator(".panel")).to_have_count(0)

    page.get_by_label("API key").fill("page-key")
    page.get_by_label("API key").press("Enter")
    page.set_input_files(f"{GENERIC} .file-input", [files["keyed.jpg"]])
    # No worker here: the job stays queued, and its event stream (a stream token in the query) stays open.
    expect(card(page, "keyed.jpg").locator(".badge")).to_have_text("Queued")
    expect(card(page, "keyed.jpg").locator(".problem")).to_be_hidden()
    page.wait_for_timeout(1500)
    expect(card(page, "keyed.jpg").locator(".problem")).to_be_hidden()
    assert [(url.split("?")[-1].split("=")[0], status) for url, status in streams] == [("token", 200)]
    assert any(url.endswith("/stream-token") for url in urls)
    assert urls and not any("page-key" in url or "api_key" in url for url in urls)  # the key never in a URL


def test_a_queued_job_shows_how_many_jobs_are_ahead_of_it(make_pipeline: PipelineFactory, pages: PageFactory,
                                                          files: dict[str, Path]) -> None:
    gateway = make_pipeline(workers=0)  # nothing runs: the two jobs sent first stay ahead
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for seed in (38, 39):
            assert client.post("/v1/jobs", files={"file": ("x.jpg", images.jpeg(seed=seed), "image/jpeg")}
                               ).status_code == 202
    page = pages(gateway.url)

    page.set_input_files(f"{GENERIC} .file-input", [files["in-line.jpg"]])

    item = card(page, "in-line.jpg")
    expect(item.locator(".badge")).to_have_text("Queued")
    expect(item.locator(".in-line")).to_have_text("2 jobs ahead")

    item.get_by_role("button", name="Cancel in-line.jpg").click()  # a person changes their mind
    expect(item.locator(".badge")).to_have_text("Cancelled")
    expect(item.locator(".problem-text")).to_have_text("This job was cancelled before it started.")
    expect(item.locator(".in-line")).to_be_hidden()
    expect(item.get_by_role("button", name="Cancel in-line.jpg")).to_be_hidden()

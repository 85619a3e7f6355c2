"""The portal in a real browser, against a real gateway and real workers: each model's panel loaded
at run time (one shipped with its plugin, one at its team's own origin), a panel that throws on
load, a model added while the page is open, keyboard operation and a phone-sized screen."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT, free_port, wait_until
from tests.browser.conftest import PageFactory, save_screenshot
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.models import write_manifest_model, write_unserved_model
from tests.support.pipeline import fresh_redis_database, pipeline_env
from tests.support.team_origin import team_origin

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(300)]

RESULT_TIMEOUT_MS = 90_000
SHAPES = ["round", "square", "striped"]
EXAMPLE_PANEL = REPO_ROOT / "models" / "panels" / "mobilenet_v3_small" / "panel.js"


def manifest(name: str, description: str, panel: str) -> str:
    return f"""
name = "{name}"
version = "1"
description = "{description}"
[input]
width = 96
height = 64
resize = "nearest"
normalisation = "zero_to_one"
[weights]
file = "{name}.keras"
[labels]
file = "labels.txt"
[top_k]
default = 3
max = 3
[panel]
{panel}
"""


# A team's own panel, served from the team's origin. It also tries to change the api it was given.
TEAM_PANEL = """
export const apiVersion = "1";

export function mount(host, api) {
  let refused = false;
  try {
    api.submit = null;
  } catch (error) {
    refused = error instanceof TypeError;
  }
  host.dataset.apiRefusedChange = String(refused && Object.isFrozen(api.model));
  host.innerHTML = `<div class="quick-look">
      <p class="team-greeting">Shapes, by the ${api.model.name} team (panel interface ${api.version})</p>
      <label class="button">Classify shapes<input type="file" accept="image/*" multiple class="visually-hidden"></label>
      <p class="team-status"></p></div>`;
  const status = host.querySelector(".team-status");
  host.querySelector("input").addEventListener("change", async (event) => {
    const answer = await api.submit([...event.target.files]);  // one batch
    if (!answer.ok) return void (status.textContent = answer.text);
    let done = 0;
    for (const job of answer.body.jobs) {
      const list = host.querySelector(".quick-look").appendChild(document.createElement("ol"));
      api.follow(job.id, (type, doc) => {
        if (type !== "status" || !doc.result) return;
        api.renderPredictions(list, doc.result.predictions);
        done += 1;
        status.textContent = `${done} of ${answer.body.jobs.length} done`;
      });
    }
  });
}
"""
BROKEN_PANEL = 'throw new Error("this panel is broken on purpose");\nexport function mount() {}\n'
# Loads and mounts, then throws: from its own click handler, or from its callback for a job's events.
FLAKY_PANEL = """
export function mount(host, api) {
  host.innerHTML = `<button type="button" class="button-quiet">Throw from a click</button>
    <button type="button" class="button-quiet">Throw on an event</button>`;
  const [click, event] = host.querySelectorAll("button");
  click.addEventListener("click", () => {
    throw new Error("thrown from a click");
  });
  event.addEventListener("click", async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: 96, height: 64 });
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    const answer = await api.submit(new File([blob], "blank.png", { type: "image/png" }));
    api.follow(answer.body.id, () => {
      throw new Error("thrown from an event");
    });
  });
}
"""


@dataclass
class Portal:
    pipeline: LocalPipeline
    model_dirs: Path
    team_origin: str

    @property
    def url(self) -> str:
        return self.pipeline.url


@pytest.fixture(scope="module")
def portal(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """A gateway with the built-ins, a team's model whose panel is at the team's origin (its worker
    running), and a model whose panel throws on load; workers for mobilenet_v3_small and the team's."""
    workdir = tmp_path_factory.mktemp("portal")
    model_dirs, site = workdir / "model-dirs", workdir / "team-site"
    model_dirs.mkdir()
    site.mkdir()
    (site / "panel.js").write_text(TEAM_PANEL)
    with team_origin(site) as origin:
        write_manifest_model(model_dirs, manifest("team_cnn", "a team's shape classifier, its panel at its own origin",
                                                  f'url = "{origin}/panel.js"'), SHAPES)
        write_manifest_model(model_dirs, manifest("broken_panel", "a model whose panel throws on load",
                                                  'file = "panel.js"'), SHAPES, {"panel.js": BROKEN_PANEL})
        write_manifest_model(model_dirs, manifest("flaky_panel", "a model whose panel throws once mounted",
                                                  'file = "panel.js"'), SHAPES, {"panel.js": FLAKY_PANEL})
        env = pipeline_env(fresh_redis_database(redis_url), workdir, ASYNCINFER_MODEL_DIRS=str(model_dirs),
                           ASYNCINFER_PANEL_ORIGINS=origin)
        pipeline = LocalPipeline(env=env, workdir=workdir, port=free_port())
        try:
            pipeline.start(workers=0, gateway=True)
            pipeline.start_worker(model="mobilenet_v3_small")
            pipeline.start_worker(model="team_cnn")
            yield Portal(pipeline, model_dirs, origin)
        finally:
            pipeline.stop()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "kitchen-table.jpg"
    path.write_bytes(images.jpeg(480, 360, seed=71))
    return path


@pytest.fixture(scope="module")
def second_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "garden-path.png"
    path.write_bytes(images.encode(images.picture(400, 300, seed=72), "PNG"))
    return path


def wait_ready(page: Page) -> None:
    expect(page.locator("html")).to_have_attribute("data-ready", "true")


def shell_files_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "web").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_two_team_panels_each_classify_while_a_broken_one_shows_an_error_card(
        portal: Portal, pages: PageFactory, photo: Path, second_photo: Path) -> None:
    policy = httpx.get(portal.url, timeout=30).headers["content-security-policy"]
    assert f"script-src 'self' {portal.team_origin};" in policy  # exactly the declared, allowed panel origin
    page = pages(portal.url, height=900)

    shipped, team, broken = (page.locator(f"#model-{name}") for name in ("mobilenet_v3_small", "team_cnn", "broken_panel"))
    expect(shipped).to_have_attribute("data-panel-source", "/panels/mobilenet_v3_small/panel.js")
    expect(team).to_have_attribute("data-panel-source", f"{portal.team_origin}/panel.js")
    expect(page.locator("#model-mobilenet_v2")).to_have_attribute("data-panel-source", "/static/panels/generic.js")
    for ready in (shipped, team, page.locator("#model-mobilenet_v2")):
        expect(ready).to_have_attribute("data-state", "ready")
    expect(broken).to_have_attribute("data-state", "failed")
    expect(broken.locator(".panel-error-detail")).to_have_text("Error: this panel is broken on purpose")
    expect(broken.locator(".panel-error-source")).to_have_text("/panels/broken_panel/panel.js")
    expect(team.locator(".team-greeting")).to_have_text("Shapes, by the team_cnn team (panel interface 1.0)")
    expect(team.locator(".panel-body")).to_have_attribute("data-api-refused-change", "true")

    page.set_input_files("#model-mobilenet_v3_small input[type=file]", [photo])
    page.set_input_files("#model-team_cnn input[type=file]", [photo, second_photo])

    expect(shipped.locator(".quick-status")).to_have_text("Done: 3 predictions.", timeout=RESULT_TIMEOUT_MS)
    expect(shipped.locator(".predictions li")).to_have_count(3)
    expect(shipped.locator(".prediction-score").first).to_have_text(re.compile(r"^\d+(\.\d)?%$"))
    expect(team.locator(".team-status")).to_have_text("2 of 2 done", timeout=RESULT_TIMEOUT_MS)
    for predictions in team.locator(".quick-look ol").all():
        assert set(predictions.locator(".prediction-label").all_text_contents()) == set(SHAPES)
    expect(broken).to_have_attribute("data-state", "failed")
    page.mouse.move(0, 0)
    shutil.copyfile(save_screenshot(page, "portal.png"), REPO_ROOT / "docs" / "portal.png")

    # The person can still classify with that model: the generic panel takes the broken one's place.
    broken.get_by_role("button", name="Use the generic panel instead").click()
    expect(broken).to_have_attribute("data-state", "ready")
    expect(broken.locator(".drop-zone")).to_be_focused()


def test_a_panel_that_throws_once_mounted_shows_its_error_card_and_the_others_keep_working(
        portal: Portal, pages: PageFactory, photo: Path) -> None:
    page = pages(portal.url)
    flaky = page.locator("#model-flaky_panel")
    expect(flaky).to_have_attribute("data-state", "ready")

    flaky.get_by_role("button", name="Throw from a click").click()
    expect(flaky).to_have_attribute("data-state", "failed")
    expect(flaky.locator(".panel-error-detail")).to_have_text("Error: thrown from a click")
    errors = page.uncaught_errors  # type: ignore[attr-defined]
    assert len(errors) == 1 and "thrown from a click" in errors[0]  # the browser still reports it, as it should
    errors.clear()

    page.reload()
    wait_ready(page)
    flaky.get_by_role("button", name="Throw on an event").click()
    expect(flaky).to_have_attribute("data-state", "failed")
    expect(flaky.locator(".panel-error-detail")).to_have_text("Error: thrown from an event")
    page.set_input_files("#model-mobilenet_v3_small input[type=file]", [photo])
    expect(page.locator("#model-mobilenet_v3_small .quick-status")).to_have_text("Done: 3 predictions.",
                                                                               timeout=RESULT_TIMEOUT_MS)
    expect(page.locator("#model-mobilenet_v2")).to_have_attribute("data-state", "ready")


def test_a_model_added_while_the_page_is_open_appears_after_a_reload_with_its_panel(
        portal: Portal, pages: PageFactory, photo: Path) -> None:
    shell_before = shell_files_digest()
    page = pages(portal.url)
    expect(page.locator("#model-late_cnn")).to_have_count(0)

    # The team starts from the example panel and ships it beside its manifest; no worker serves it yet.
    write_manifest_model(portal.model_dirs, manifest("late_cnn", "added while the page was open", 'file = "panel.js"'),
                         SHAPES, {"panel.js": EXAMPLE_PANEL.read_text()})
    with httpx.Client(base_url=portal.url, timeout=30) as client:
        wait_until(lambda: client.get("/v1/models/late_cnn").status_code == 200, 10, "the gateway to read the manifest")
    page.reload()
    wait_ready(page)

    late = page.locator("#model-late_cnn")
    expect(late).to_have_attribute("data-state", "ready")
    expect(late).to_have_attribute("data-panel-source", "/panels/late_cnn/panel.js")
    expect(late.locator(".panel-status")).to_have_text("no worker yet: jobs wait queued")
    expect(page.get_by_role("navigation", name="Models").get_by_role("link", name="late_cnn")).to_be_visible()
    page.set_input_files("#model-late_cnn input[type=file]", [photo])
    expect(late.locator(".quick-status")).to_have_text("Next in line.")
    late.get_by_role("button", name="Cancel").click()
    expect(late.locator(".quick-status")).to_have_text("Cancelled before it started.")
    expect(late.get_by_role("button", name="Cancel")).to_be_hidden()
    assert shell_files_digest() == shell_before


def test_the_portal_by_keyboard_and_on_a_phone_sized_screen(portal: Portal, pages: PageFactory, photo: Path) -> None:
    page = pages(portal.url, width=375, height=800)
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width <= viewport == 375
    for selector in [".panel", ".panel-error", ".quick-look", ".drop-zone", ".model-nav"]:
        for right in page.locator(selector).evaluate_all("els => els.map(e => e.getBoundingClientRect().right)"):
            assert right <= 375, selector
    save_screenshot(page, "portal-narrow.png")

    # Tab to the shipped panel's file button; Enter opens the picker, and the result comes back.
    shipped = page.locator("#model-mobilenet_v3_small")
    picker = shipped.locator("input[type=file]")
    for _ in range(30):
        page.keyboard.press("Tab")
        if picker.evaluate("el => el === document.activeElement"):
            break
    expect(picker).to_be_focused()
    assert shipped.locator("label.button").evaluate("el => getComputedStyle(el).boxShadow") != "none", "no visible focus"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files([photo])
    expect(shipped.locator(".quick-status")).to_have_text("Done: 3 predictions.", timeout=RESULT_TIMEOUT_MS)


def test_panels_that_cannot_be_used_say_why_in_their_place(make_pipeline: PipelineFactory, pages: PageFactory,
                                                           tmp_path: Path) -> None:
    dirs = tmp_path / "model-dirs"
    write_unserved_model(dirs, "missing_panel", 'file = "panel.js"')  # declared, never shipped: 404
    write_unserved_model(dirs, "stray_panel", 'url = "http://127.0.0.1:9/panel.js"')  # an origin not allowed
    write_unserved_model(dirs, "future_panel", 'file = "panel.js"', {
        "panel.js": 'export const apiVersion = "2";\nexport function mount() {}\n'})
    gateway = make_pipeline(workers=0, ASYNCINFER_MODEL_DIRS=str(dirs))
    page = pages(gateway.url)

    problems = {
        "missing_panel": re.compile(r"^TypeError: .*/panels/missing_panel/panel\.js"),
        "stray_panel": "Error: the panel's origin http://127.0.0.1:9 is not in ASYNCINFER_PANEL_ORIGINS",
        "future_panel": "Error: it needs panel interface 2; this portal offers 1.0",
    }
    for name, problem in problems.items():
        section = page.locator(f"#model-{name}")
        expect(section).to_have_attribute("data-state", "failed")
        expect(section.locator(".panel-error-detail")).to_have_text(problem)
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        expect(page.locator(f"#model-{name}")).to_have_attribute("data-state", "ready")
    assert "127.0.0.1:9" not in httpx.get(gateway.url, timeout=30).headers["content-security-policy"]

"""The gateway's side of the portal, on a real gateway: each model's panel in /v1/models, the
files of a panel's directory (and nothing else) served as scripts, and the page's policy."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cli.processes import REPO_ROOT
from tests.conftest import PipelineFactory
from tests.support.models import write_unserved_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALLOWED = "https://panels.example.com"


def test_panels_are_listed_served_from_their_directory_only_and_named_in_the_pages_policy(
        make_pipeline: PipelineFactory, tmp_path: Path) -> None:
    dirs = tmp_path / "model-dirs"
    write_unserved_model(dirs, "shipped", 'file = "panel.js"', {
        "panel.js": "export function mount(host) { host.textContent = 'hi'; }\n",
        "chart.js": "export const chart = 1;\n"})
    (dirs / "secret.js").write_text("the key is 42\n")
    write_unserved_model(dirs, "remote", f'url = "{ALLOWED}/remote/panel.js"')
    write_unserved_model(dirs, "stray", 'url = "https://elsewhere.example.net/panel.js"')
    gateway = make_pipeline(workers=0, ASYNCINFER_MODEL_DIRS=str(dirs), ASYNCINFER_PANEL_ORIGINS=ALLOWED)

    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        panels = {model["name"]: model["panel"] for model in client.get("/v1/models").json()["models"]}
        script = client.get("/panels/shipped/panel.js")
        example = client.get("/panels/mobilenet_v3_small/panel.js")
        refused = {path: client.get(path).status_code for path in [
            "/panels/shipped/shipped.toml", "/panels/shipped/labels.txt", "/panels/shipped/%2e%2e/secret.js",
            "/panels/shipped/..%2fsecret.js", "/panels/shipped/%2fetc%2fpasswd", "/panels/mobilenet_v3_small/..%2f"
            "mobilenet_v3_small.py", "/panels/mobilenet_v2/panel.js", "/panels/remote/panel.js",
            "/panels/no_such_model/panel.js"]}
        page = client.get("/")

    assert panels["shipped"] == {"url": "/panels/shipped/panel.js", "problem": None}
    assert panels["remote"] == {"url": f"{ALLOWED}/remote/panel.js", "problem": None}
    assert panels["stray"] == {"url": "https://elsewhere.example.net/panel.js",
                               "problem": "the panel's origin https://elsewhere.example.net is not in "
                                          "ASYNCINFER_PANEL_ORIGINS"}
    assert panels["mobilenet_v2"] is None  # the generic panel
    assert panels["mobilenet_v3_small"] == {"url": "/panels/mobilenet_v3_small/panel.js", "problem": None}
    assert script.status_code == 200 and script.text.startswith("export function mount")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["x-content-type-options"] == "nosniff"
    assert example.text == (REPO_ROOT / "models" / "panels" / "mobilenet_v3_small" / "panel.js").read_text()
    assert refused == dict.fromkeys(refused, 404)
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' {ALLOWED};" in policy  # the stray origin is declared but not allowed
    assert "elsewhere.example.net" not in policy

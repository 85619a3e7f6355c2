"""A model's panel: its address in the portal, the files served for it, and the page's policy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shared.models import ModelSpec
from shared.models.panel import Panel, content_security_policy, panel_of, script_origins, served_file
from tests.support.models import builtin

ALLOWED = ["https://panels.example.com"]


def with_panel(panel: str, name: str = "team_cnn") -> ModelSpec:
    return replace(builtin(), name=name, panel=panel)


def test_a_shipped_panel_is_served_by_the_gateway_and_a_url_only_from_an_allowed_origin(tmp_path: Path) -> None:
    assert panel_of(builtin("mobilenet_v2"), ALLOWED) is None  # the generic panel
    assert panel_of(with_panel(str(tmp_path / "panel.js")), ALLOWED) == Panel("/panels/team_cnn/panel.js")
    assert panel_of(with_panel("https://panels.example.com/cnn/panel.js"), ALLOWED) == Panel(
        "https://panels.example.com/cnn/panel.js")
    refused = panel_of(with_panel("https://elsewhere.example.net/panel.js"), ALLOWED)
    assert refused is not None and refused.problem == (
        "the panel's origin https://elsewhere.example.net is not in ASYNCINFER_PANEL_ORIGINS")


def test_a_panel_is_a_url_or_a_javascript_file() -> None:
    for refused in ("/srv/panels/panel.py", "panel.js", "ftp://panels.example.com/panel.js"):
        with pytest.raises(ValueError, match="neither an http"):
            with_panel(refused)


def test_only_the_panel_directorys_scripts_and_styles_are_served(tmp_path: Path) -> None:
    panel_dir = tmp_path / "team"
    (panel_dir / "lib").mkdir(parents=True)
    for name in ("panel.js", "lib/chart.js", "panel.css", "model.keras", "labels.txt"):
        (panel_dir / name).write_text("x")
    (tmp_path / "secret.js").write_text("x")
    (panel_dir / "link.js").symlink_to(tmp_path / "secret.js")
    spec = with_panel(str(panel_dir / "panel.js"))
    assert served_file(spec, "panel.js") == (panel_dir / "panel.js").resolve()
    assert served_file(spec, "lib/chart.js") == (panel_dir / "lib" / "chart.js").resolve()
    assert served_file(spec, "panel.css") is not None
    for refused in ("model.keras", "labels.txt", "../secret.js", "lib/../../secret.js", "link.js", "/etc/passwd",
                    "missing.js", ""):
        assert served_file(spec, refused) is None, refused
    assert served_file(with_panel("https://panels.example.com/panel.js"), "panel.js") is None


def test_the_page_admits_scripts_from_itself_and_exactly_the_allowed_panel_origins_in_use(tmp_path: Path) -> None:
    specs = [builtin(), with_panel(str(tmp_path / "panel.js"), "a"),
             with_panel("https://panels.example.com/a/panel.js", "b"),
             with_panel("https://panels.example.com/b/panel.js", "c"),
             with_panel("https://elsewhere.example.net/panel.js", "d")]
    origins = script_origins(specs, [*ALLOWED, "https://unused.example.org"])
    assert origins == ["https://panels.example.com"]
    policy = content_security_policy(origins)
    assert "script-src 'self' https://panels.example.com;" in policy
    assert "connect-src 'self';" in policy and "object-src 'none'" in policy
    assert content_security_policy([]).startswith("default-src 'self'; script-src 'self'; ")

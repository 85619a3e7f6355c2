"""Entry points in the asyncinfer.models group, as installed packages declare them: a package whose
plugin fails to load is left out and named, and every other model is still served."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.models.catalogue import ENTRY_POINT_GROUP, Catalogue


def install_metadata(site: Path, name: str, entry_points: str) -> None:
    """The .dist-info an installer writes for a package (only what entry-point discovery reads)."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


def test_a_plugin_that_fails_to_load_is_left_out_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_metadata(tmp_path, "broken_team_models", "broken = broken_team_models.cnn:spec")
    (tmp_path / "not_a_spec.py").write_text("spec = 42\n")
    install_metadata(tmp_path, "odd_team_models", "odd = not_a_spec:spec")
    monkeypatch.syspath_prepend(str(tmp_path))

    catalogue = Catalogue.discover(default_model="mobilenet_v2")

    assert set(catalogue.models()) >= {"mobilenet_v2", "mobilenet_v3_small"}
    assert catalogue.problems == {
        "entry point broken = broken_team_models.cnn:spec": "ModuleNotFoundError: No module named 'broken_team_models'",
        "entry point odd = not_a_spec:spec": "TypeError: entry point odd = not_a_spec:spec is not a ModelSpec "
                                             "(nor a list of them, nor a function returning one)",
    }

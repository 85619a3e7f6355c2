"""Several gateway processes' metrics (api/process_metrics.py): one of them counts the events every
process hears, another takes over when it dies, and a dead process's live gauges are forgotten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from api import process_metrics
from api.process_metrics import SHARED_DIR_VARIABLE, EventCounter, forget_dead_processes, registry_to_expose
from cli.main import build_parser
from shared.config import Settings


def test_a_process_alone_counts_every_event() -> None:
    assert EventCounter(None).counts_here()


def test_one_process_counts_events_and_another_takes_over_when_it_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process_metrics, "TAKEOVER_INTERVAL_S", 0.0)
    first, second = EventCounter(tmp_path), EventCounter(tmp_path)
    assert first.counts_here() and not second.counts_here()
    assert first.counts_here() and not second.counts_here()  # still the first's
    first.close()  # as the kernel does when its process dies
    assert second.counts_here() and not first.counts_here()
    second.close()


def test_a_process_that_does_not_count_tries_again_only_after_the_takeover_interval(tmp_path: Path) -> None:
    first, second = EventCounter(tmp_path), EventCounter(tmp_path)
    assert first.counts_here() and not second.counts_here()
    first.close()
    assert not second.counts_here()  # within TAKEOVER_INTERVAL_S of its last try: no lock taken per event
    second.close()


def _gauge_in_another_process(directory: Path, mode: str, value: float) -> None:
    code = f"from prometheus_client import Gauge; Gauge('g', 'g', multiprocess_mode={mode!r}).set({value})"
    subprocess.run([sys.executable, "-c", code], env={SHARED_DIR_VARIABLE: str(directory)}, check=True)


def _value(name: str) -> float | None:
    return registry_to_expose().get_sample_value(name)


def test_the_live_gauges_of_a_dead_process_are_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHARED_DIR_VARIABLE, str(tmp_path))
    _gauge_in_another_process(tmp_path, "livesum", 3)
    assert _value("g") == 3  # the process has ended, and its file is still read
    forget_dead_processes(tmp_path)
    assert _value("g") is None


def test_a_process_alone_exposes_its_own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SHARED_DIR_VARIABLE, raising=False)
    assert registry_to_expose() is REGISTRY


def test_the_number_of_gateway_processes_is_checked() -> None:
    assert Settings(gateway_processes=4).gateway_processes == 4
    with pytest.raises(ValidationError):
        Settings(gateway_processes=0)


@pytest.mark.parametrize("given", ["0", "65", "two"])
def test_up_refuses_a_number_of_gateway_processes_the_setting_would(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["up", "--gateway-processes", "64"]).gateway_processes == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--gateway-processes", given])
    assert f"--gateway-processes: '{given}': Input should be" in capsys.readouterr().err

"""`asyncinfer doctor` for real on the CPU, with explicitly random weights and a short sweep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from shared.config import get_settings


@pytest.fixture
def random_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("ASYNCINFER_WEIGHTS", "random")
    monkeypatch.setenv("ASYNCINFER_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("ASYNCINFER_MAX_BATCH_SIZE", raising=False)
    monkeypatch.delenv("ASYNCINFER_BATCH_SIZE_SWEEP", raising=False)
    get_settings.cache_clear()  # a process reads its settings once; each test here is a process of its own
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("runtime", ["keras", "onnxruntime"])
def test_doctor_prints_devices_runtime_rates_and_the_batch_size(random_weights: Path, runtime: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--model", "mobilenet_v3_small", "--runtime", runtime, "--device", "cpu",
                 "--largest", "4", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "GPUs (TensorFlow): " in out and "ONNX Runtime providers: " in out and "CPUExecutionProvider" in out
    assert "model mobilenet_v3_small@" in out and f"runtime {runtime}" in out and "device cpu" in out
    for size in (1, 2, 4):
        assert f"batch {size:>4}: " in out
    assert "measured best batch size: " in out
    assert "the worker would use batch size 32: the model's own for cpu" in out
    assert list((random_weights / "batch_sweeps").glob("*.json"))  # the worker's next start reuses it


def test_doctor_refuses_bad_input_in_one_line(random_weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--runtime", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asyncinfer doctor: ASYNCINFER_RUNTIME: ") and err.count("\n") == 1
    assert main(["doctor", "--model", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asyncinfer doctor: ASYNCINFER_MODEL=no_such_model") and err.count("\n") == 1

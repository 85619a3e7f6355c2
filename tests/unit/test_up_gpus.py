"""`asyncinfer up --gpus N`: one worker per GPU, each with CUDA_VISIBLE_DEVICES naming its own."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from cli import up
from cli.main import build_parser
from shared.config import Settings


class RecordingPipeline:
    """Stands in for LocalPipeline: records the workers' environments, starts nothing."""

    started: ClassVar[list[dict[str, str] | None]] = []

    def __init__(self, env: dict[str, str], **_: Any) -> None:
        self.env, self.workers, self.url = env, [], "http://127.0.0.1:1"
        self.supervisor = type("Supervisor", (), {"watch": staticmethod(lambda: 0)})()

    def start_worker(self, wait_ready: bool = True, model: str | None = None,
                     env: dict[str, str] | None = None) -> object:
        RecordingPipeline.started.append(env)
        self.workers.append(object())
        return self.workers[-1]

    def start(self, *, workers: int = 1, gateway: bool = True, wait_workers: bool = True) -> None:
        for _ in range(workers):
            self.start_worker(wait_ready=False)

    def wait_worker_ready(self, worker: object) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str] | None]:
    RecordingPipeline.started = []
    monkeypatch.setattr(up, "LocalPipeline", RecordingPipeline)
    monkeypatch.setattr(up, "redis_answers", lambda url: True)
    monkeypatch.setattr(up, "stop_on_sigterm", lambda: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return RecordingPipeline.started


def test_up_with_gpus_pins_one_worker_per_gpu(recorded: list[dict[str, str] | None],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert up.run_pipeline(Settings(weights="random"), gpus=2) == 0
    assert [env and env["CUDA_VISIBLE_DEVICES"] for env in recorded] == ["0", "1"]
    out = capsys.readouterr().out
    assert "worker0: mobilenet_v2@1 loaded on GPU 0 (CUDA_VISIBLE_DEVICES=0)" in out
    assert "worker1: mobilenet_v2@1 loaded on GPU 1 (CUDA_VISIBLE_DEVICES=1)" in out


def test_up_without_gpus_starts_one_worker_with_the_environment_as_it_is(
        recorded: list[dict[str, str] | None]) -> None:
    assert up.run_pipeline(Settings(weights="random")) == 0
    assert recorded == [None]


def test_gpus_do_not_go_with_a_pool(recorded: list[dict[str, str] | None], capsys: pytest.CaptureFixture[str]) -> None:
    assert up.run_pipeline(Settings(weights="random"), gpus=2, workers=(0, 3)) == 2
    assert "--gpus starts one worker per GPU" in capsys.readouterr().err and recorded == []


def test_the_gpus_option_takes_a_count_or_all() -> None:
    assert build_parser().parse_args(["up", "--gpus", "2"]).gpus == "2"
    assert build_parser().parse_args(["up", "--gpus", "all"]).gpus == "all"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--gpus", "0"])

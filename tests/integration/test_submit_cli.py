"""`asyncinfer submit` as a user runs it: a subprocess against the real gateway and worker."""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT, free_port, wait_until
from client.results_file import iter_results
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.pipeline import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def cli(pipeline: LocalPipeline, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli", "submit", *args, "--url", pipeline.url]


def cli_env() -> dict[str, str]:
    env = clean_env()
    return {**env, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}


def run_cli(pipeline: LocalPipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(pipeline, *args), cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=240)


def make_images(directory: Path, count: int, seed: int) -> list[Path]:
    """Distinct images (own seeds and sizes), so no other test's job shares their hash."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        if i % 2:
            path, data = directory / f"img_{i:03d}.png", images.encode(images.picture(160 + i, 120, seed + i), "PNG")
        else:
            path, data = directory / f"img_{i:03d}.jpg", images.jpeg(160 + i, 121, seed=seed + i)
        path.write_bytes(data)
        paths.append(path)
    return paths


def jobs_per_sha256(pipeline: LocalPipeline) -> collections.Counter[str]:
    """Job documents in the gateway's store, counted by the sha256 of their input."""
    with sqlite3.connect(pipeline.workdir / "jobs.db") as db:
        rows = db.execute("SELECT value FROM kv WHERE key LIKE 'job::%'").fetchall()
    return collections.Counter(json.loads(value)["input"]["sha256"] for (value,) in rows)


def test_a_directory_of_fifty_images(pipeline: LocalPipeline, tmp_path: Path) -> None:
    make_images(tmp_path / "photos", 50, seed=7000)
    out = tmp_path / "results.jsonl"

    run = run_cli(pipeline, str(tmp_path / "photos"), "--concurrency", "8", "--top-k", "3", "--out", str(out))

    assert run.returncode == 0, run.stderr
    assert "50 files: 50 succeeded, 0 failed" in run.stderr
    assert "submitted 50 · done 50 · failed 0" in run.stderr  # the progress bar's last state
    results = list(iter_results(out))
    assert len(results) == 50 and {r.status for r in results} == {"succeeded"}
    assert all(len(r.predictions) == 3 and r.predictions[0]["score"] >= r.predictions[1]["score"] for r in results)
    assert len({r.job_id for r in results}) == 50
    in_store = jobs_per_sha256(pipeline)
    assert all(in_store[r.sha256] == 1 for r in results if r.sha256)

    again = run_cli(pipeline, str(tmp_path / "photos"), "--top-k", "3", "--out", str(tmp_path / "again.csv"))

    assert again.returncode == 0, again.stderr
    assert {(r.file, r.job_id) for r in iter_results(tmp_path / "again.csv")} == {(r.file, r.job_id) for r in results}
    assert jobs_per_sha256(pipeline) == in_store  # a re-run replays the same jobs


@pytest.mark.parametrize(("stop_signal", "out_name"), [(signal.SIGINT, "results.jsonl"), (signal.SIGKILL, "results.csv")],
                         ids=["ctrl-c-jsonl", "killed-csv"])
def test_an_interrupted_run_resumes_to_completion_without_duplicate_jobs(
    pipeline: LocalPipeline, tmp_path: Path, stop_signal: signal.Signals, out_name: str
) -> None:
    files = make_images(tmp_path / "photos", 40, seed=8000 + 100 * stop_signal)
    out = tmp_path / out_name
    # One file at a time, so the run is still going when it is stopped.
    process = subprocess.Popen(cli(pipeline, str(tmp_path / "photos"), "--concurrency", "1", "--out", str(out)),
                               cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(iter_results(out))) >= 5, 120, "5 results", interval_s=0.02)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    recorded = list(iter_results(out))
    assert 5 <= len(recorded) < 40
    if stop_signal == signal.SIGINT:
        assert process.returncode == 130
        assert "interrupted" in stderr and "--resume" in stderr

    resumed = run_cli(pipeline, str(tmp_path / "photos"), "--concurrency", "4", "--out", str(out), "--resume")

    assert resumed.returncode == 0, resumed.stderr
    assert f"skipping {len(recorded)} of 40 files already in" in resumed.stderr
    results = list(iter_results(out))
    assert sorted(r.file for r in results) == sorted(map(str, files)), "each file exactly once"
    assert {r.status for r in results} == {"succeeded"}
    in_store = jobs_per_sha256(pipeline)
    assert {r.sha256: in_store[r.sha256] for r in results if r.sha256} == {r.sha256: 1 for r in results if r.sha256}


def test_a_mix_of_good_and_bad_files(pipeline: LocalPipeline, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    good = make_images(folder, 4, seed=9000)
    (folder / "not-really.jpg").write_bytes(b"hello, I am text")
    (folder / "truncated.jpg").write_bytes(images.jpeg(640, 480, seed=9100)[:3000])
    (folder / "dot.png").write_bytes(images.encode(images.picture(1, 1, seed=9101), "PNG"))
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    out = tmp_path / "results.csv"

    run = run_cli(pipeline, str(folder), str(notes), "--out", str(out))

    assert run.returncode == 1
    assert "8 files: 4 succeeded, 4 failed" in run.stderr
    failures = run.stderr.split("4 failed:")[-1]
    for name, reason in [("not-really.jpg", "415"), ("truncated.jpg", "422"), ("dot.png", "422"), ("notes.txt", "415")]:
        line = next(line for line in failures.splitlines() if name in line)
        assert f"rejected ({reason}: " in line
    results = {Path(r.file).name: r for r in iter_results(out)}
    assert {results[p.name].status for p in good} == {"succeeded"}
    assert all(results[p.name].predictions for p in good)
    assert results["notes.txt"].status == "rejected" and results["notes.txt"].error_code == "415"


def test_an_unreachable_gateway_stops_the_run_with_a_resume_hint(tmp_path: Path) -> None:
    make_images(tmp_path / "photos", 2, seed=9200)
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "cli", "submit", str(tmp_path / "photos"), "--out", str(tmp_path / "r.jsonl"),
         "--url", f"http://127.0.0.1:{free_port()}", "--retry-for", "1"],
        cwd=REPO_ROOT, env=cli_env(), capture_output=True, text=True, timeout=60,
    )

    assert run.returncode == 2
    assert "cannot reach the gateway at http://127.0.0.1:" in run.stderr and "--resume" in run.stderr
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_a_gateway_restart_mid_run_loses_nothing_and_duplicates_nothing(make_pipeline: PipelineFactory,
                                                                        tmp_path: Path) -> None:
    own = make_pipeline(workers=1)
    files = make_images(tmp_path / "photos", 40, seed=9300)
    out = tmp_path / "results.jsonl"
    process = subprocess.Popen(cli(own, str(tmp_path / "photos"), "--concurrency", "2", "--out", str(out)),
                               cwd=REPO_ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(iter_results(out))) >= 5, 120, "5 results", interval_s=0.02)
        assert own.gateway is not None
        own.gateway.kill()  # a crash: open uploads and event streams break mid-way
        own.gateway.wait(10)
        own.start_gateway()
        _, stderr = process.communicate(timeout=240)
    finally:
        process.kill()

    assert process.returncode == 0, stderr
    results = list(iter_results(out))
    assert sorted(r.file for r in results) == sorted(map(str, files))
    assert {r.status for r in results} == {"succeeded"}
    in_store = jobs_per_sha256(own)
    assert all(in_store[r.sha256] == 1 for r in results if r.sha256)
    assert sum(in_store.values()) == 40


def test_files_queued_behind_others_show_their_place_in_line(make_pipeline: PipelineFactory, tmp_path: Path) -> None:
    pipeline = make_pipeline(workers=0)  # nothing runs: the files wait in line
    make_images(tmp_path / "photos", 4, seed=7900)
    log_path = tmp_path / "submit.log"
    # An interactive terminal as far as the progress bar is concerned: it redraws as positions come.
    env = {**cli_env(), "TTY_INTERACTIVE": "1", "TTY_COMPATIBLE": "1"}
    with open(log_path, "w") as log:
        run = subprocess.Popen(cli(pipeline, str(tmp_path / "photos"), "--out", str(tmp_path / "results.jsonl")),
                               cwd=REPO_ROOT, env=env, stdout=log, stderr=log, text=True)
    try:
        wait_until(lambda: "queued: " in log_path.read_text(errors="replace"), 60, "the position in the progress bar",
                   failed=lambda: None if run.poll() is None else log_path.read_text()[-2000:])
        shown = log_path.read_text(errors="replace")
        assert any(f"queued: {ahead} ahead" in shown for ahead in (1, 2, 3)), shown[-2000:]
        pipeline.start_worker()
        assert run.wait(120) == 0, log_path.read_text()[-2000:]
    finally:
        if run.poll() is None:
            run.kill()
    assert "4 files: 4 succeeded, 0 failed" in log_path.read_text(errors="replace")

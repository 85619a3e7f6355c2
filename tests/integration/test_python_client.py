"""The Python client library (asyncinfer_client) against the real gateway and worker: submit and
wait, many images at once, events across a gateway restart, listing and purging, typed errors; and
the library installed alone in a clean virtual environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from asyncinfer_client import (
    AsyncClient,
    Client,
    Conflict,
    GatewayUnavailable,
    Job,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    UndecodableImage,
    UnsupportedImage,
)
from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT, free_port, wait_until
from tests.conftest import PipelineFactory
from tests.support import images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_submit_then_wait(pipeline: LocalPipeline) -> None:
    with Client(pipeline.url) as client:
        job = client.submit(images.jpeg(seed=34_000), filename="cat.jpg", top_k=3)
        done = client.wait(job, timeout_s=60)

    assert job.status == "queued" and done.id == job.id
    assert done.status == "succeeded" and len(done.predictions) == 3
    assert all(0 <= p.class_id < 1000 and 0 <= p.score <= 1 for p in done.predictions)


def test_submit_many_yields_each_result_once(pipeline: LocalPipeline) -> None:
    pictures = [images.jpeg(96, 96, seed=34_100 + i) for i in range(100)]

    async def run() -> list[tuple[bytes, Job]]:
        async with AsyncClient(pipeline.url) as client:
            return [item async for item in client.submit_many(pictures, concurrency=8, top_k=1)]  # type: ignore[misc]

    results = asyncio.run(run())

    assert sorted(image for image, _ in results) == sorted(pictures)  # each once
    assert {job.status for _, job in results} == {"succeeded"}
    assert len({job.id for _, job in results}) == 100
    again = asyncio.run(run())  # the same images: their keys return the same jobs
    assert {job.id for _, job in again} == {job.id for _, job in results}


def test_events_survive_a_gateway_restart(make_pipeline: PipelineFactory) -> None:
    own = make_pipeline(ASYNCINFER_FAULT_INFERENCE_DELAY_S="4")  # the job runs while the gateway is down
    seen: list[Job] = []
    with Client(own.url) as client:
        job = client.submit(images.jpeg(seed=34_300))
        follower = threading.Thread(target=lambda: seen.extend(client.events(job.id)), daemon=True)
        follower.start()
        wait_until(lambda: any(j.status == "running" for j in seen), 60, "the job to run", interval_s=0.05)
        assert own.gateway is not None
        own.gateway.kill()
        own.gateway.wait(10)
        own.start_gateway()
        follower.join(90)

    assert [j.status for j in seen][-1] == "succeeded", [j.status for j in seen]
    assert [j.status for j in seen].count("succeeded") == 1


def test_list_and_purge(make_pipeline: PipelineFactory) -> None:
    own = make_pipeline(workers=0)
    with Client(own.url) as client:
        jobs = [client.submit(images.jpeg(seed=34_400 + i)) for i in range(3)]
        client.cancel(jobs[0].id)
        with pytest.raises(Conflict):
            client.purge(jobs[1].id)  # still queued
        client.purge(jobs[0].id)
        listed = [job.id for job in client.list_jobs(page_size=1)]
        queued = [job.id for job in client.list_jobs(status=["queued"])]
        with pytest.raises(NotFound) as gone:
            client.get(jobs[0].id)

    assert listed == queued == [jobs[2].id, jobs[1].id]
    assert gone.value.status == 404 and gone.value.request_id


def test_a_session_finds_its_jobs_again(pipeline: LocalPipeline) -> None:
    with Client(pipeline.url) as client:
        session = client.create_session(ttl_s=600)
        jobs = [client.submit(images.jpeg(seed=34_200 + i), filename=f"{i}.jpg", session_id=session["id"])
                for i in range(2)]
        batch = client.submit_batch([images.jpeg(seed=34_210)], session_id=session["id"])
        done = [client.wait(job_id, timeout_s=60) for job_id in [job.id for job in jobs] + [member["id"] for member in batch["jobs"]]]
        listed = {job.id for job in client.list_jobs(session_id=session["id"])}
        history = client.get_session(session["id"])["history"]
        with pytest.raises(NotFound):
            client.get_session("no-such-session")
        with pytest.raises(NotFound):
            client.submit(images.jpeg(seed=34_211), session_id="no-such-session")

    assert {job.session_id for job in done} == {session["id"]}
    assert listed == {job.id for job in done}
    assert [entry["job_id"] for entry in history] == [job.id for job in done]
    assert [entry["top_prediction"]["label"] for entry in history] == [job.predictions[0].label for job in done]


def test_typed_errors(pipeline: LocalPipeline, tmp_path: Path) -> None:
    with Client(pipeline.url) as client:
        with pytest.raises(NotFound):
            client.get("no-such-job")
        with pytest.raises(UnsupportedImage) as not_an_image:
            client.submit(b"plain text, not an image", filename="notes.txt")
        with pytest.raises(UndecodableImage):
            client.submit(images.encode(images.picture(4, 4, seed=1), "PNG"), filename="tiny.png")
        with pytest.raises(PayloadTooLarge):
            client.submit(b"\xff\xd8\xff" + bytes(11 * 1024 * 1024), filename="huge.jpg")

    assert not_an_image.value.status == 415 and not_an_image.value.title and not_an_image.value.detail


def test_429_and_503_are_retried_then_given_up(make_pipeline: PipelineFactory) -> None:
    full = make_pipeline(workers=0, ASYNCINFER_BACKLOG_LIMIT="1")
    with Client(full.url, retry_for_s=3) as client:
        client.submit(images.jpeg(seed=34_500))
        started = time.monotonic()
        with pytest.raises(GatewayUnavailable) as refused:
            client.submit(images.jpeg(seed=34_501))
        retried_s = time.monotonic() - started
    assert isinstance(refused.value.__cause__, TooManyRequests)
    assert retried_s >= 3  # asked again until the budget ran out

    no_redis = LocalPipeline(env={**full.env, "ASYNCINFER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                             port=free_port(), workdir=full.workdir / "no-redis" if full.workdir else None)
    no_redis.start(workers=0)
    try:
        with Client(no_redis.url, retry_for_s=2) as client, pytest.raises(GatewayUnavailable) as unavailable:
            client.submit(images.jpeg(seed=34_502))
    finally:
        no_redis.stop()
    assert isinstance(unavailable.value.__cause__, ServiceUnavailable)


SCRIPT = """
import importlib.util, sys
from asyncinfer_client import Client
assert not [m for m in ("tensorflow", "keras", "onnxruntime", "celery", "shared", "api") if importlib.util.find_spec(m)]
with Client(sys.argv[1]) as client:
    job = client.wait(client.submit(sys.argv[2], top_k=2), timeout_s=120)
print(job.status, len(job.predictions))
"""


@pytest.mark.slow
def test_the_library_installed_alone_runs_a_job(pipeline: LocalPipeline, tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is installed by scripts/setup"
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", str(venv), "--python", sys.executable], check=True, timeout=120)
    subprocess.run([uv, "pip", "install", "-q", str(REPO_ROOT / "clients" / "python")], check=True, timeout=300,
                   env={**os.environ, "VIRTUAL_ENV": str(venv)})
    picture = tmp_path / "cat.jpg"
    picture.write_bytes(images.jpeg(seed=34_600))

    done = subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, pipeline.url, str(picture)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["succeeded", "2"]


EXAMPLE = REPO_ROOT / "docs" / "examples" / "classify_folder.py"


@pytest.mark.slow
def test_the_readme_example_resumes_after_ctrl_c_without_duplicates(make_pipeline: PipelineFactory,
                                                                     tmp_path: Path) -> None:
    own = make_pipeline(ASYNCINFER_FAULT_INFERENCE_DELAY_S="0.3")  # slow enough to interrupt mid-run
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.jpg").write_bytes(images.jpeg(96, 96, seed=34_700 + i))
    (folder / "notes.jpg").write_bytes(b"not an image")
    env = {**os.environ, "ASYNCINFER_URL": own.url, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, str(EXAMPLE), str(folder)]

    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=tmp_path) as first:
        assert first.stdout is not None
        printed = [first.stdout.readline() for _ in range(5)]
        first.send_signal(signal.SIGINT)
        first.wait(30)
    again = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=180)

    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert len(lines) == 31 and all(line.strip() for line in printed)
    assert "notes.jpg: refused (415" in again.stdout
    with Client(own.url) as client:
        assert len(list(client.list_jobs())) == 30  # nothing submitted twice

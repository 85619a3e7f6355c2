"""Models as plugins, on real processes: two built-in models served at once by their own workers, a
third added as a manifest while the gateway runs, and the refusals that come before anything is stored."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT, asyncinfer_command, free_port, wait_until
from client.results_file import iter_results
from shared.config import Settings
from shared.models import ModelSpec
from shared.models.catalogue import ENTRY_POINT_GROUP
from shared.models.manifest import read_manifest
from shared.preprocessing import decode
from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import scrape_metrics, stream_events
from tests.support.models import builtin, save_small_keras_model, write_manifest_model
from tests.support.pipeline import clean_env, fresh_redis_database, pipeline_env
from workers.model.classifier import to_model_input
from workers.model.weights import weights_sha256

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TOLERANCE = 1e-4
SEED = Settings().random_seed
TINY_LABELS = ["round", "square", "striped"]
TINY_MANIFEST = """
name = "tiny_cnn"
version = "1"
description = "a three-class test model at 96×64, added at test time"
[input]
width = 96
height = 64
resize = "nearest"
normalisation = "zero_to_one"
[weights]
file = "tiny_cnn.keras"
[labels]
file = "labels.txt"
[top_k]
default = 2
max = 3
[batch_sizes]
cpu = 4
"""


def write_tiny_model(directory: Path) -> Path:
    return write_manifest_model(directory, TINY_MANIFEST, TINY_LABELS)


def direct_scores(spec: ModelSpec, datas: list[bytes]) -> tuple[np.ndarray, str]:
    """The model called directly in this process on the same preprocessing, with the workers'
    random weights (same seed), and those weights' digest."""
    model, _ = spec.build("random", SEED)
    batch = to_model_input(spec, [decode(data, spec.input) for data in datas])
    return np.asarray(model.predict_on_batch(batch)), weights_sha256(model)


def submit_batch_and_follow(client: httpx.Client, model: str, datas: list[bytes], **params: Any) -> list[dict[str, Any]]:
    files = [("files", (f"image{i}", data, "application/octet-stream")) for i, data in enumerate(datas)]
    response = client.post("/v1/batches", files=files, params={"model": model, **params})
    assert response.status_code == 202, response.text
    batch = response.json()
    stream_events(client, f"/v1/batches/{batch['id']}/events")
    return [client.get(f"/v1/jobs/{job['id']}").json() for job in batch["jobs"]]


def assert_answered_by(docs: list[dict[str, Any]], spec: ModelSpec, datas: list[bytes]) -> None:
    expected, sha256 = direct_scores(spec, datas)
    # The comparison means something only if the model tells the images apart.
    assert len({round(float(row.max()), 5) for row in expected}) > 1, f"{spec.ref} scores every image alike"
    for doc, row in zip(docs, expected, strict=True):
        assert doc["status"] == "succeeded", doc["error"]
        assert doc["model"]["name"] == spec.name and doc["model"]["version"] == spec.version
        assert doc["model"]["weights_sha256"] == sha256
        predictions = doc["result"]["predictions"]
        ids = list(np.argsort(-row, kind="stable")[: len(predictions)])
        assert [p["class_id"] for p in predictions] == ids
        assert np.abs(np.array([p["score"] for p in predictions]) - row[ids]).max() <= TOLERANCE
        assert [p["label"] for p in predictions] == [spec.labels()[i] for i in ids]


@pytest.fixture(scope="module")
def two_models(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A gateway with a manifest directory (empty at first) and one worker for each built-in model."""
    workdir = tmp_path_factory.mktemp("models")
    (workdir / "model-dirs").mkdir()
    env = pipeline_env(fresh_redis_database(redis_url), workdir, ASYNCINFER_MODEL_DIRS=str(workdir / "model-dirs"))
    pipeline = LocalPipeline(env=env, workdir=workdir, port=free_port())
    try:
        pipeline.start(workers=0, gateway=True)
        pipeline.start_worker(model="mobilenet_v2")
        pipeline.start_worker(model="mobilenet_v3_small@1")
        yield pipeline, workdir / "model-dirs"
    finally:
        pipeline.stop()


def test_two_models_at_once_each_job_answered_by_its_own(two_models: Any) -> None:
    pipeline, _ = two_models
    datas = [data for data, _ in list(images.parity_set().values())[:6]]
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        v2 = submit_batch_and_follow(client, "mobilenet_v2", datas, top_k=5)
        v3 = submit_batch_and_follow(client, "mobilenet_v3_small", datas, top_k=5)
        default = client.post("/v1/jobs", files={"file": ("a", datas[0], "application/octet-stream")}).json()
        listed = client.get("/v1/models").json()
    assert_answered_by(v2, builtin("mobilenet_v2"), datas)
    assert_answered_by(v3, builtin("mobilenet_v3_small"), datas)
    assert [d["result"]["predictions"] for d in v2] != [d["result"]["predictions"] for d in v3]
    # A client that names no model gets the default one, as before models were plugins.
    assert default["model"] == {"name": "mobilenet_v2", "version": "1"}
    assert default["params"]["top_k"] == builtin().default_top_k
    by_name = {model["name"]: model for model in listed["models"]}
    assert listed["default_model"] == "mobilenet_v2"
    assert {"mobilenet_v2", "mobilenet_v3_small"} <= set(by_name)
    for name in ("mobilenet_v2", "mobilenet_v3_small"):
        assert by_name[name]["status"] == "serving" and by_name[name]["live_workers"] == 1
        assert by_name[name]["default_version"] == "1"
    assert by_name["mobilenet_v3_small"]["versions"][0]["input"]["resize"] == "bicubic"
    # Each pool has its own autoscaling signal, the one its ScaledObject reads.
    metrics = scrape_metrics(f"{pipeline.url}/metrics")
    for ref in ("mobilenet_v2@1", "mobilenet_v3_small@1"):
        assert metrics[("asyncinfer_model_workers_live", (("model", ref),))] == 1
    # Each worker's log says which model it serves: neither ever ran the other's jobs.
    assert "model mobilenet_v2@1 ready" in pipeline.logs("worker0")
    assert "model mobilenet_v3_small@1 ready" in pipeline.logs("worker1")
    assert "sending it to its own queue" not in pipeline.logs("worker0") + pipeline.logs("worker1")


def test_unknown_models_and_bad_requests_are_refused_before_anything_is_stored(two_models: Any) -> None:
    pipeline, _ = two_models
    data = images.jpeg(320, 240, seed=41)
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        before = len(client.get("/v1/jobs", params={"limit": 100}).json()["jobs"])
        cases = {
            "no_such_model": (404, "no model is named 'no_such_model'"),
            "mobilenet_v2@7": (404, "model mobilenet_v2 has no version '7'; it has: 1"),
            "Bad Name!": (400, "model"),
        }
        for model, (status, detail) in cases.items():
            for path, field in (("/v1/jobs", "file"), ("/v1/batches", "files")):
                response = client.post(path, files={field: ("a.jpg", data, "image/jpeg")}, params={"model": model})
                assert response.status_code == status, (model, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert detail in response.json()["detail"]
        # The form field works like the query parameter.
        response = client.post("/v1/jobs", files={"file": ("a.jpg", data, "image/jpeg")}, data={"model": "nope"})
        assert response.status_code == 404
        assert client.get("/v1/models/no_such_model").status_code == 404
        assert len(client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]) == before


def test_a_third_model_added_as_a_manifest_serves_without_a_gateway_restart(two_models: Any) -> None:
    pipeline, model_dirs = two_models
    manifest = write_tiny_model(model_dirs)
    spec = read_manifest(manifest)
    datas = [images.encode(images.picture(300, 200, seed=60 + i), "PNG") for i in range(4)]
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        wait_until(lambda: client.get("/v1/models/tiny_cnn").status_code == 200, 10, "the gateway to read the manifest")
        # No worker serves it yet: its jobs are accepted and wait queued (documented in the README).
        waiting = client.post("/v1/jobs", files={"file": ("a.png", datas[0], "image/png")},
                              params={"model": "tiny_cnn"})
        assert waiting.status_code == 202, waiting.text
        assert waiting.json()["params"]["top_k"] == 2  # the manifest's default
        tiny = client.get("/v1/models/tiny_cnn").json()
        assert (tiny["status"], tiny["backlog"], tiny["live_workers"]) == ("no_workers", 1, 0)
        assert tiny["versions"][0]["input"] == {"width": 96, "height": 64, "resize": "nearest",
                                                 "normalisation": "zero_to_one", "colour": "rgb",
                                                 "preprocessed_at": "gateway"}
        too_many = client.post("/v1/jobs", files={"file": ("a.png", datas[0], "image/png")},
                               params={"model": "tiny_cnn", "top_k": 4})
        assert too_many.status_code == 400 and "from 1 to 3 for model tiny_cnn@1" in too_many.json()["detail"]
        metrics = scrape_metrics(f"{pipeline.url}/metrics")
        assert metrics[("asyncinfer_model_workers_live", (("model", "tiny_cnn@1"),))] == 0
        assert metrics[("asyncinfer_model_workers_desired", (("model", "tiny_cnn@1"),))] == 1  # its pool from zero
        assert metrics[("asyncinfer_model_jobs_outstanding", (("model", "tiny_cnn@1"),))] == 1
        pipeline.start_worker(model="tiny_cnn")
        first = client.get(f"/v1/jobs/{waiting.json()['id']}", params={"wait": 30}).json()
        docs = submit_batch_and_follow(client, "tiny_cnn@1", datas, top_k=3)
        assert client.get("/v1/models/tiny_cnn").json()["status"] == "serving"
    assert_answered_by([first, *docs], spec, [datas[0], *datas])
    assert all(p["label"] in TINY_LABELS for doc in docs for p in doc["result"]["predictions"])
    assert pipeline.gateway is not None and pipeline.gateway.poll() is None, "the gateway was not restarted"


def test_a_worker_for_an_unknown_model_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(asyncinfer_command("worker", "--model", "no_such_model"), cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "asyncinfer worker: ASYNCINFER_MODEL=no_such_model: no model is named 'no_such_model'")


def test_two_versions_with_a_traffic_split_that_changes_without_a_restart(two_models: Any) -> None:
    """Runs after the third model's test: tiny_cnn@1 is served; version 2, with weights of its own, is
    added beside it and gets a worker of its own."""
    pipeline, model_dirs = two_models
    v2_manifest = TINY_MANIFEST.replace('version = "1"', 'version = "2"').replace("tiny_cnn.keras", "tiny_cnn_v2.keras")
    save_small_keras_model(model_dirs / "tiny_cnn" / "tiny_cnn_v2.keras", tomllib.loads(v2_manifest), 3, filters=12)
    (model_dirs / "tiny_cnn" / "tiny_cnn_v2.toml").write_text(v2_manifest)  # last: the gateway reads it whole
    v1, v2 = (read_manifest(model_dirs / "tiny_cnn" / name) for name in ("tiny_cnn.toml", "tiny_cnn_v2.toml"))
    gateway_pid = pipeline.gateway.pid if pipeline.gateway else None

    def split(*args: str) -> None:
        result = subprocess.run(asyncinfer_command("models", "split", "tiny_cnn", *args), env=pipeline.env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def post(client: httpx.Client, data: bytes, headers: dict[str, str] | None = None, **params: Any) -> dict[str, Any]:
        response = client.post("/v1/jobs", content=data, headers={"Content-Type": "image/png", **(headers or {})},
                               params={"model": "tiny_cnn", **params})
        assert response.status_code == 202, response.text
        return dict(response.json())

    def versions_of(client: httpx.Client, datas: list[bytes], **params: str) -> list[str]:
        return [post(client, data, **params)["model"]["version"] for data in datas]

    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        wait_until(lambda: len(client.get("/v1/models/tiny_cnn").json()["versions"]) == 2, 10, "version 2 to appear")
        assert client.get("/v1/models/tiny_cnn").json()["traffic"] == {"2": 100.0}  # no split: the latest
        # Version 2 runs beside version 1, on its own worker: its jobs are answered by its own weights.
        datas = [images.encode(images.picture(120, 90, seed=4000 + i), "PNG") for i in range(4)]
        late = post(client, datas[0], model="tiny_cnn@2", deadline_s="1")  # no v2 worker yet: it misses its start
        time.sleep(1.5)
        pipeline.start_worker(model="tiny_cnn@2")
        on_v2 = submit_batch_and_follow(client, "tiny_cnn@2", datas, top_k=3)
        assert_answered_by(on_v2, v2, datas)
        assert direct_scores(v1, datas)[1] != on_v2[0]["model"]["weights_sha256"]  # not version 1's weights
        late_doc = client.get(f"/v1/jobs/{late['id']}", params={"wait": 30}).json()
        assert (late_doc["status"], late_doc["error"]["code"]) == ("cancelled", "timeout")
        # Metrics by model and version, to judge a canary by: outcomes and latencies, counted per version.
        wanted = {("asyncinfer_jobs_finished_total", (("error_code", ""), ("model", "tiny_cnn"), ("status", "succeeded"),
                                                      ("version", "2"))): 4,
                  ("asyncinfer_jobs_finished_total", (("error_code", "timeout"), ("model", "tiny_cnn"),
                                                      ("status", "cancelled"), ("version", "2"))): 1,
                  ("asyncinfer_job_seconds_count", (("model", "tiny_cnn"), ("version", "2"))): 5,
                  ("asyncinfer_job_queued_seconds_count", (("model", "tiny_cnn"), ("version", "2"))): 4}
        wait_until(lambda: all(scrape_metrics(f"{pipeline.url}/metrics").get(key) == count
                               for key, count in wanted.items()), 10, f"the gateway to count {wanted}")

        split("1=90", "2=10")
        wait_until(lambda: client.get("/v1/models/tiny_cnn").json()["traffic"] == {"1": 90.0, "2": 10.0}, 5,
                   "the gateway to follow the split")
        datas = [images.encode(images.picture(16, 16, seed=5000 + i), "PNG") for i in range(1000)]
        chosen = versions_of(client, datas)
        share = chosen.count("2") / len(chosen)
        print(f"90/10 split over {len(chosen)} jobs: {100 * share:.1f}% went to version 2")
        assert abs(share - 0.10) <= 0.03
        # Sticky: the same image again sees the same version.
        assert versions_of(client, datas[:100]) == chosen[:100]
        # With an Idempotency-Key the key draws the version, not the image: one image under 100 keys goes to
        # both versions (all 100 on one would have odds of 0.9^100), and each retry replays its own job.
        keyed = [post(client, datas[0], {"Idempotency-Key": f"k{i}"}) for i in range(100)]
        assert {doc["model"]["version"] for doc in keyed} == {"1", "2"}
        again = [post(client, datas[0], {"Idempotency-Key": f"k{i}"}) for i in range(100)]
        assert [(doc["id"], doc["model"]["version"]) for doc in again] == [
            (doc["id"], doc["model"]["version"]) for doc in keyed]
        # A pinned version is honoured whatever the split.
        assert set(versions_of(client, datas[:30], model="tiny_cnn@2")) == {"2"}
        split("1=0", "2=1")
        wait_until(lambda: client.get("/v1/models/tiny_cnn").json()["traffic"] == {"2": 100.0}, 5, "the new split")
        assert set(versions_of(client, datas[:50])) == {"2"}
        split("--clear")
        split("1=1")
        wait_until(lambda: client.get("/v1/models/tiny_cnn").json()["traffic"] == {"1": 100.0}, 5, "the last split")
        assert set(versions_of(client, datas[:50])) == {"1"}
        metrics = client.get("/metrics").text
    assert 'asyncinfer_jobs_submitted_total{model="tiny_cnn",version="2"}' in metrics
    assert 'asyncinfer_jobs_finished_total{error_code="",model="tiny_cnn",status="succeeded",version="1"}' in metrics
    assert pipeline.gateway is not None and pipeline.gateway.pid == gateway_pid and pipeline.gateway.poll() is None


def test_submit_cli_sends_every_file_to_the_model_it_names(two_models: Any, tmp_path: Path) -> None:
    pipeline, _ = two_models
    datas = [images.encode(images.picture(200, 150, seed=6100 + i), "PNG") for i in range(3)]
    for i, data in enumerate(datas):
        (tmp_path / f"photo{i}.png").write_bytes(data)
    out = tmp_path / "results.csv"

    run = subprocess.run(asyncinfer_command("submit", str(tmp_path), "--model", "mobilenet_v3_small", "--top-k", "5",
                                            "--out", str(out), "--url", pipeline.url),
                         env=pipeline.env, capture_output=True, text=True, timeout=240)

    assert run.returncode == 0, run.stderr
    results = sorted(iter_results(out), key=lambda result: result.file)
    assert [result.model for result in results] == ["mobilenet_v3_small@1"] * 3
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        docs = [client.get(f"/v1/jobs/{result.job_id}").json() for result in results]
    assert_answered_by(docs, builtin("mobilenet_v3_small"), datas)


EXAMPLE_PACKAGE = REPO_ROOT / "docs" / "examples" / "team-model"


@pytest.mark.slow
def test_a_teams_package_installed_beside_asyncinfer_serves_its_model_decoded_by_the_worker(
        make_pipeline: PipelineFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's example package, installed as a team would (its entry point in the asyncinfer.models
    group), into a directory the gateway and the worker have on their path. Its model declares that the
    worker decodes its uploads: the gateway stores them as they came."""
    uv = shutil.which("uv")
    assert uv, "uv is installed by scripts/setup"
    site = tmp_path / "site"
    subprocess.run([uv, "pip", "install", "-q", "--no-deps", "--target", str(site), str(EXAMPLE_PACKAGE)],
                   check=True, timeout=300)
    (point,) = [point for dist in importlib.metadata.distributions(path=[str(site)])
                for point in dist.entry_points if point.group == ENTRY_POINT_GROUP]
    monkeypatch.syspath_prepend(str(site))
    spec = point.load()
    pipeline = make_pipeline(workers=0, PYTHONPATH=str(site))
    pipeline.start_worker(model="leaf_cnn")
    datas = [images.jpeg(260, 180, seed=6200), images.encode(images.picture(90, 120, seed=6201), "PNG"),
             images.jpeg(64, 64, seed=6202), images.encode(images.picture(300, 200, seed=6203), "PNG")]
    with httpx.Client(base_url=pipeline.url, timeout=60) as client:
        listed = client.get("/v1/models/leaf_cnn").json()
        docs = submit_batch_and_follow(client, "leaf_cnn", datas, top_k=3)
        default = client.post("/v1/jobs", files={"file": ("a.jpg", datas[0], "image/jpeg")}).json()
    assert listed["versions"][0]["source"] == "entry point leaf_cnn = leaf_models.leaf_cnn:spec"
    assert listed["versions"][0]["input"]["preprocessed_at"] == "worker"
    assert_answered_by(docs, spec, datas)
    assert all(p["label"] in ("healthy", "rust", "blight") for doc in docs for p in doc["result"]["predictions"])
    assert default["model"]["name"] == "mobilenet_v2"  # the default model is unchanged

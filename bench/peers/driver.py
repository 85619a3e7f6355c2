"""`python -m bench.peers [--quick]`: asyncinfer beside Ray Serve and BentoML, serving the same ONNX
MobileNetV2 (random weights, exported by the worker's own code: bench/peers/model.py) with the
same preprocessing (shared/preprocessing.py) on one machine, one system at a time.

Per round, each system in turn (the order reversed every other round, so that drift on a shared
machine hits all alike): started, checked for parity on a few images against onnxruntime called
here on the same preprocessed input, driven by the bench's closed-loop clients (bench/load.py) at
each concurrency, its processes' CPU metered, stopped. Writes bench/results/peers-<run id>.json
and .md (and peers-latest.*), and prints the Markdown.

Systems: asyncinfer (gateway + one onnxruntime worker + Redis, bench/services.py; submit, then
its SSE stream to the terminal event), ray-sync (Ray Serve, @serve.batch), ray-async (Ray Serve's
Celery task consumer; submit, then poll), bentoml-sync (a batchable API), bentoml-task
(@bentoml.task; submit, then poll). Peers run in their own venvs (scripts/bench-peers-setup); one
that is not installed, or does not start, is skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.client import Connection, HttpError
from bench.e2e import pipeline_pids
from bench.imageset import BenchImage, describe, image_set
from bench.load import LoadResult, Operation, closed_loop, end_to_end
from bench.paired import merged
from bench.peers.report import render
from bench.services import Services, cpu_s
from cli.processes import REPO_ROOT, free_port, http_ok
from shared.models.spec import InputSpec
from shared.preprocessing import decode

RESULTS = REPO_ROOT / "bench" / "results"
SYSTEMS = ("asyncinfer", "ray-sync", "ray-async", "bentoml-sync", "bentoml-task")
# What each system is, for the report.
DESIGNS = {
    "asyncinfer": "gateway decodes, stores the job (SQLite) and queues it (Redis); a worker batches; SSE push",
    "ray-sync": "Ray Serve replica decodes, @serve.batch batches; answer in the HTTP response; nothing kept",
    "ray-async": "Ray Serve ingress enqueues the upload (Celery on Redis); consumer decodes, batch 1; client polls",
    "bentoml-sync": "BentoML batchable API (multipart); the batch decodes; answer in the response; nothing kept",
    "bentoml-task": "@bentoml.task, same batchable function; request and result in SQLite, run in-process (no queue); "
                    "client polls status, then gets",
}
PEER_VENVS = {"ray-sync": "ray", "ray-async": "ray", "bentoml-sync": "bentoml", "bentoml-task": "bentoml"}
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0
POLL_GIVE_UP_S = 60.0  # a polled task not done by then counts as an error
PARITY_IMAGES = 3
PARITY_TOLERANCE = 1e-4  # on each of the top-5 scores; batches of other sizes move the last digits


@dataclass(frozen=True)
class Plan:
    images: int
    rounds: int
    round_s: float
    warmup_s: float
    clients: tuple[int, ...]


QUICK = Plan(images=8, rounds=2, round_s=4.0, warmup_s=1.5, clients=(16, 48))
FULL = Plan(images=32, rounds=3, round_s=10.0, warmup_s=2.0, clients=(16, 48))


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peer_venvs() -> dict[str, tuple[Path | None, str]]:
    """Per peer venv name: (its directory, '') when ready, else (None, why not), from the setup
    script's --check (which installs nothing)."""
    check = subprocess.run([str(REPO_ROOT / "scripts" / "bench-peers-setup"), "--check"], capture_output=True,
                           text=True, check=False)
    found: dict[str, tuple[Path | None, str]] = {}
    for line in check.stdout.splitlines():
        name, _, rest = line.partition(": ")
        if rest.startswith("ready in "):
            found[name] = (Path(rest.removeprefix("ready in ")), "")
        else:
            found[name] = (None, rest)
    return found


# --- one request per system -------------------------------------------------------------------

def multipart(image: BenchImage, field_name: str = "images") -> tuple[bytes, str]:
    """A one-file multipart body, as BentoML takes file inputs."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{image.name}\"\r\n"
            f"Content-Type: {image.content_type}\r\n\r\n").encode()
    return head + image.data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass
class Requests:
    """Each system's request, returning (latency in s, the answer's predictions)."""

    poll_s: float
    _multipart: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def _form(self, image: BenchImage) -> tuple[bytes, str]:
        if image.name not in self._multipart:  # built once: the client's CPU is metered too
            self._multipart[image.name] = multipart(image)
        return self._multipart[image.name]

    async def asyncinfer(self, conn: Connection, image: BenchImage) -> tuple[float, Any]:
        started = time.time()
        _, doc = await conn.post("/v1/jobs", image.data, image.content_type, expect=202)
        final, arrived = await conn.follow_until_terminal(f"/v1/jobs/{doc['id']}/events")
        if final != "succeeded":
            raise RuntimeError(f"job ended {final}")
        _, job = await conn.get(f"/v1/jobs/{doc['id']}", expect=200)  # after the clock: parity only
        return arrived - started, job["result"]["predictions"]

    async def ray_sync(self, conn: Connection, image: BenchImage) -> tuple[float, Any]:
        started = time.time()
        _, answer = await conn.post("/classify", image.data, image.content_type, expect=200)
        return time.time() - started, answer["predictions"]

    async def ray_async(self, conn: Connection, image: BenchImage) -> tuple[float, Any]:
        started = time.time()
        _, task = await conn.post("/submit", image.data, image.content_type, expect=200)
        while time.time() - started < POLL_GIVE_UP_S:
            _, state = await conn.get(f"/status/{task['id']}", expect=200)
            if state["status"] == "SUCCESS" and state["result"] is not None:
                return time.time() - started, state["result"]["predictions"]
            if state["status"] in ("FAILURE", "REVOKED"):
                raise RuntimeError(f"task {state['status']}")
            await asyncio.sleep(self.poll_s)
        raise TimeoutError(f"task {task['id']} not done in {POLL_GIVE_UP_S:.0f}s")

    async def bentoml_sync(self, conn: Connection, image: BenchImage) -> tuple[float, Any]:
        body, content_type = self._form(image)
        started = time.time()
        _, answer = await conn.post("/classify", body, content_type, expect=200)
        return time.time() - started, answer[0]["predictions"]

    async def bentoml_task(self, conn: Connection, image: BenchImage) -> tuple[float, Any]:
        body, content_type = self._form(image)
        started = time.time()
        _, task = await conn.post("/classify_task/submit", body, content_type, expect=200)
        query = f"task_id={task['task_id']}"
        while time.time() - started < POLL_GIVE_UP_S:
            _, state = await conn.get(f"/classify_task/status?{query}", expect=200)
            if state["status"] == "completed":
                _, answer = await conn.get(f"/classify_task/get?{query}", expect=200)
                return time.time() - started, answer[0]["predictions"]
            if state["status"] in ("failed", "canceled"):
                raise RuntimeError(f"task {state['status']}")
            await asyncio.sleep(self.poll_s)
        raise TimeoutError(f"task {task['task_id']} not done in {POLL_GIVE_UP_S:.0f}s")

    def for_system(self, system: str) -> Callable[[Connection, BenchImage], Any]:
        return getattr(self, system.replace("-", "_"))  # type: ignore[no-any-return]

    def operation(self, system: str) -> Operation:
        if system == "asyncinfer":
            return end_to_end  # the bench's own: no result fetch after the terminal event
        request = self.for_system(system)

        async def timed(conn: Connection, image: BenchImage) -> float:
            latency_s, _ = await request(conn, image)
            return float(latency_s)

        return timed


# --- running systems -------------------------------------------------------------------------

class PeerProcess:
    """A peer started in a session of its own: its CPU is that of every process in the session
    (Ray's GCS, raylet, controller, proxy and replicas; BentoML's arbiter and its workers)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path, port: int,
                 ready: Callable[[], bool], extra_pids: dict[str, int] | None = None) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self.extra_pids = extra_pids or {}
        self.seen: set[int] = set()  # the peer's processes found so far, to end any left over
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self.process.poll() is not None else f"not ready in {START_TIMEOUT_S:.0f}s"
                self.stop()
                raise RuntimeError(f"{name} {why}: {self.last_log_line()}")
            time.sleep(0.5)

    def last_log_line(self) -> str:
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1][:300] if lines else "(no output)"

    def pids(self) -> dict[str, int]:
        """Every process of the peer now, by `comm:pid`: those of its session and their descendants
        (BentoML's workers leave the session), and the extra ones (a Redis)."""
        table: dict[int, tuple[str, int, int]] = {}  # pid: (comm, parent, session)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (text[text.index("(") + 1:text.rindex(")")], int(fields[1]), int(fields[3]))

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid == self.process.pid or table.get(pid, ("", 0, 0))[2] == self.process.pid:
                    return True
                pid = table.get(pid, ("", 0, 0))[1]
                if pid <= 1:
                    return False
            return False

        found = {f"{comm}:{pid}": pid for pid, (comm, _, _) in table.items() if ours(pid)}
        self.seen.update(found.values())
        return {**self.extra_pids, **found}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the session's group: this peer's processes only
            try:  # Ray's controller takes 30 s to give up on a clean shutdown; the peers keep nothing
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # what outlived the leader (Ray's workers), in its group
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in self.seen - {self.process.pid}:  # and those that had left it, by their own ids
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Running:
    system: str
    port: int
    pids: Callable[[], dict[str, int]]
    stop: Callable[[], None]


def start_system(system: str, services: Services, model: dict[str, Any], venvs: dict[str, tuple[Path | None, str]],
                 workdir: Path, round_index: int) -> Running:
    if system == "asyncinfer":
        pipeline = services.pipeline(workers=1, ASYNCINFER_RUNTIME="onnxruntime")
        pids = pipeline_pids(pipeline, services.redis.pid)
        return Running(system, pipeline.port, lambda: pids, pipeline.stop)
    venv, why = venvs.get(PEER_VENVS[system], (None, "not in scripts/bench-peers-setup --check"))
    if venv is None:
        raise RuntimeError(why)
    port = free_port()
    # The project on the path: the services import bench/peers/inference.py and, through it,
    # shared/preprocessing.py and shared/models/spec.py (numpy and Pillow only).
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ASYNCINFER_", "PYTHON"))}
    env.update(PYTHONPATH=str(REPO_ROOT), PEER_ONNX=model["onnx"], PEER_INPUT=json.dumps(model["input"]),
               PEER_MAX_BATCH_SIZE=str(model["max_batch_size"]), PEER_BATCH_WAIT_MS=str(model["batch_wait_ms"]),
               RAY_USAGE_STATS_ENABLED="0", BENTOML_DO_NOT_TRACK="true", BENTOML_HOME=str(workdir / "bentoml"))
    python = str(venv / "bin" / "python")
    log_path = workdir / f"{system}-round{round_index}.log"
    extra: dict[str, int] = {}
    if system == "ray-sync":
        command = [python, "-m", "bench.peers.ray_sync", str(port)]
    elif system == "ray-async":
        import redis

        url = f"{services.redis_base}/0"
        redis.Redis.from_url(url).flushdb()
        command = [python, "-m", "bench.peers.ray_async", str(port), url]
        extra = {"redis": services.redis.pid}
    else:
        command = [str(venv / "bin" / "bentoml"), "serve", "bench.peers.bentoml_service:Classifier",
                   "--host", "127.0.0.1", "--port", str(port)]
    if system.startswith("ray"):
        def ready() -> bool:
            return "ready" in log_path.read_text(errors="replace").splitlines()
    else:
        def ready() -> bool:
            return http_ok(f"http://127.0.0.1:{port}/readyz")
    peer = PeerProcess(system, command, env, log_path, port, ready, extra)
    return Running(system, port, peer.pids, peer.stop)


# --- parity ----------------------------------------------------------------------------------

class Reference:
    """onnxruntime called here, with the worker's session options, on the pixels the gateway makes."""

    def __init__(self, model: dict[str, Any]) -> None:
        from workers.model.onnx_runtime import INPUT_NAME, open_session

        self.spec = InputSpec(**model["input"])
        self.session = open_session(Path(model["onnx"]), threads=os.cpu_count() or 1,
                                    providers=["CPUExecutionProvider"])
        self.input_name = INPUT_NAME

    def top5(self, image: BenchImage) -> list[tuple[int, float]]:
        batch = self.spec.normalise(np.asarray(decode(image.data, self.spec))[None])
        scores = np.asarray(self.session.run(None, {self.input_name: batch})[0])[0]
        best = np.argsort(-scores, kind="stable")[:5]
        return [(int(i), float(scores[i])) for i in best]


async def check_parity(system: str, port: int, requests: Requests, reference: Reference,
                       images: list[BenchImage]) -> dict[str, Any]:
    conn = await Connection.open("127.0.0.1", port)
    rows: list[dict[str, Any]] = []
    try:
        for image in images[:PARITY_IMAGES]:
            _, predictions = await requests.for_system(system)(conn, image)
            expected = reference.top5(image)
            got = {int(p["class_id"]): float(p["score"]) for p in predictions}
            differences = [abs(got.get(class_id, float("inf")) - score) for class_id, score in expected]
            rows.append({"image": image.name, "top1": int(predictions[0]["class_id"]), "expected_top1": expected[0][0],
                         "max_abs_difference": max(differences)})
    finally:
        conn.close()
    same = all(row["top1"] == row["expected_top1"] and row["max_abs_difference"] <= PARITY_TOLERANCE for row in rows)
    return {"ok": same, "tolerance": PARITY_TOLERANCE, "images": rows}


# --- CPU -------------------------------------------------------------------------------------

@dataclass
class CpuTally:
    """CPU seconds of a system's processes and of this client over load phases, and the images."""

    server_s: float = 0.0
    client_s: float = 0.0
    images: int = 0
    by_process_s: dict[str, float] = field(default_factory=dict)

    def measure(self, pids: dict[str, int], phase: Callable[[], LoadResult]) -> LoadResult:
        def now() -> dict[str, float]:
            seconds = {}
            for name, pid in pids.items():
                with contextlib.suppress(OSError):  # a process that ended
                    seconds[name] = cpu_s(pid)
            return seconds

        before, client_before = now(), time.process_time()
        result = phase()
        after, client_after = now(), time.process_time()
        for name, spent in after.items():
            spent -= before.get(name, 0.0)
            kind = name.rsplit(":", 1)[0]  # comm: Ray names its workers ray::<Actor>
            self.by_process_s[kind] = self.by_process_s.get(kind, 0.0) + spent
            self.server_s += spent
        self.client_s += client_after - client_before
        self.images += result.total_completed
        return result

    def summary(self) -> dict[str, Any]:
        per = 1000 / max(1, self.images)
        heaviest = sorted(self.by_process_s.items(), key=lambda item: -item[1])[:6]
        return {"server_ms_per_image": self.server_s * per, "client_ms_per_image": self.client_s * per,
                "by_process_ms_per_image": {name: spent * per for name, spent in heaviest}}


# --- the run ---------------------------------------------------------------------------------

def saturate(port: int, images: list[BenchImage], plan: Plan, clients: int, operation: Operation) -> LoadResult:
    return asyncio.run(closed_loop("127.0.0.1", port, images, clients=clients, duration_s=plan.round_s,
                                   warmup_s=plan.warmup_s, operation=operation))


def export_model() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.peers.model"], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short rounds on 8 images (about 5 minutes)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"a subset of {','.join(SYSTEMS)}")
    parser.add_argument("--clients", default="", help="closed-loop concurrencies (default 16,48)")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often polling clients ask (default 50)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.clients:
        plan = Plan(plan.images, plan.rounds, plan.round_s, plan.warmup_s, tuple(map(int, args.clients.split(","))))
    systems = [system for system in args.systems.split(",") if system]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {', '.join(sorted(unknown))}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / f"peers-run-{stamp}"
    workdir.mkdir(parents=True)
    started = time.monotonic()
    log("exporting (or finding) the ONNX model with the worker's code")
    model = export_model()
    venvs = peer_venvs()
    images = image_set(plan.images)
    requests = Requests(poll_s=args.poll_ms / 1000)
    reference = Reference(model)
    results: dict[str, Any] = {
        "run_id": stamp, "quick": args.quick, "plan": plan.__dict__, "model": model, "images": describe(images),
        "poll_ms": args.poll_ms, "load_average_at_start": os.getloadavg(), "cores": os.cpu_count(),
        "venvs": {name: str(venv) if venv else why for name, (venv, why) in venvs.items()},
        "designs": {system: DESIGNS[system] for system in systems},
        "systems": {}, "skipped": {}, "rounds": [],
    }
    loads: dict[tuple[str, int], list[LoadResult]] = {}
    cpu: dict[tuple[str, int], CpuTally] = {}
    parity: dict[str, Any] = {}
    services = Services(workdir / "services")
    try:
        for round_index in range(plan.rounds):
            order = systems if round_index % 2 == 0 else systems[::-1]
            for system in order:
                if system in results["skipped"]:
                    continue
                log(f"round {round_index + 1}/{plan.rounds}: starting {system}")
                begun = time.monotonic()
                try:
                    running = start_system(system, services, model, venvs, workdir, round_index)
                except Exception as e:  # a peer that cannot run here is skipped, with why
                    log(f"skipping {system}: {e}")
                    results["skipped"][system] = str(e)
                    continue
                start_s = time.monotonic() - begun
                try:
                    if system not in parity:
                        parity[system] = asyncio.run(check_parity(system, running.port, requests, reference, images))
                    for clients in plan.clients:
                        log(f"{system}: {clients} clients, {plan.round_s:.0f}s")
                        tally = cpu.setdefault((system, clients), CpuTally())
                        result = tally.measure(running.pids(), functools.partial(
                            saturate, running.port, images, plan, clients, requests.operation(system)))
                        loads.setdefault((system, clients), []).append(result)
                        results["rounds"].append({"round": round_index, "system": system, "clients": clients,
                                                  "images_per_s": result.throughput_per_s,
                                                  "errors": len(result.errors), "start_s": start_s})
                except Exception as e:  # a peer that fails here is reported and left out of later rounds
                    log(f"{system} failed, skipping it from now on: {e!r}")
                    results["skipped"][system] = f"failed in round {round_index + 1}: {e!r}"
                finally:
                    running.stop()
    except (HttpError, KeyboardInterrupt) as e:
        log(f"stopped: {e!r}")
        results["stopped"] = repr(e)
    finally:
        services.stop()
    # BentoML's task store keeps every upload (hundreds of MB a run): its size is reported, not kept.
    task_store = workdir / "bentoml" / "task_result.db"
    if task_store.exists():
        results["bentoml_task_store_mb"] = task_store.stat().st_size / 1e6
        task_store.unlink()

    for system in systems:
        if (system, plan.clients[0]) not in loads:
            continue
        results["systems"][system] = {
            "parity": parity.get(system),
            "by_clients": {str(clients): {**merged(loads[(system, clients)]), "cpu": cpu[(system, clients)].summary()}
                           for clients in plan.clients if (system, clients) in loads},
        }
    results["duration_s"] = time.monotonic() - started
    for name in (f"peers-{stamp}", "peers-latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    markdown = render(results)
    for name in (f"peers-{stamp}", "peers-latest"):
        (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
    log(f"done in {results['duration_s']:.0f}s: {RESULTS / f'peers-{stamp}.md'} (run id {stamp})")
    return 0

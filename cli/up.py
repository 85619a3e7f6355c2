"""`asyncinfer up`: Redis (when none answers), one worker (or an autoscaled pool) and the gateway,
stopped together."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cli.pipeline import LocalPipeline
from cli.processes import StartFailed, stop_on_sigterm
from cli.redis_server import start_redis
from shared.config import Settings
from shared.errors import StartupError
from shared.queue import redis_answers
from workers.model.devices import worker_environments


def say(line: str) -> None:
    print(f"asyncinfer: {line}", flush=True)


def run_pipeline(settings: Settings, *, mesh: str | None = None, workers: tuple[int, int] | None = None,
                 log_level: str = "info", gpus: int = 0) -> int:
    """Redis (when none answers), the gateway and one worker; with `workers` (MIN, MAX), a pool that
    the local autoscaler sizes to the backlog (cli/autoscale.py); with `gpus`, one worker per GPU,
    each pinned to its own by CUDA_VISIBLE_DEVICES."""
    model = None
    try:
        spec = settings.catalogue().worker_model(settings.model)
        model, missing = spec.ref, spec.weights_missing(settings.weights)
    except StartupError as e:
        missing = str(e)
    if missing:
        print(f"asyncinfer up: {missing}", file=sys.stderr)
        return 2
    if gpus and workers is not None:
        print("asyncinfer up: --gpus starts one worker per GPU; it does not go with --workers", file=sys.stderr)
        return 2
    if (mesh or settings.mesh) == "consul":
        if workers is not None or gpus:
            print("asyncinfer up: --workers does not work with the mesh yet (each worker needs a sidecar of its own)",
                  file=sys.stderr)
            return 2
        from cli.up_mesh import run_mesh_pipeline

        return run_mesh_pipeline(settings)
    data_dir = Path(settings.sqlite_path).parent if settings.store_kind == "sqlite" else Path("asyncinfer-data")
    verbose = log_level == "debug"
    # Each service's output goes to its own file, and this terminal gets one line per service as
    # it becomes ready; with --log-level debug, everything they print comes here instead.
    logs_dir = None if verbose else data_dir / "logs"
    env = os.environ.copy()
    if not verbose:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's and CUDA's start-up notices
    pipeline = LocalPipeline(env=env, port=settings.port, host=settings.host, workdir=logs_dir, die_with_parent=True)
    stop_on_sigterm()
    try:
        if redis_answers(settings.redis_url):
            say(f"Redis: using the one at {settings.redis_url}")
        else:
            pipeline.supervisor.adopt("redis", start_redis(settings.redis_url, data_dir / "redis"))
            say(f"Redis: started at {settings.redis_url}")
        if gpus:
            for worker_env in worker_environments(gpus, env):
                pipeline.start_worker(wait_ready=False, env=worker_env)
        pipeline.start(workers=0 if workers or gpus else 1, gateway=True, wait_workers=False)
        url = pipeline.url
        processes = f", {settings.gateway_processes} processes" if settings.gateway_processes > 1 else ""
        say(f"gateway: serving {url} (store {settings.store_kind}{processes})")
        where = f"; logs in {logs_dir}" if logs_dir else ""
        ready = f"ready at {url}: web page {url}/, API docs {url}/docs, metrics {url}/metrics{where}; Ctrl-C stops"
        if workers is None:
            for index, worker in enumerate(pipeline.workers):
                pipeline.wait_worker_ready(worker)
                pinned = f" on GPU {index} (CUDA_VISIBLE_DEVICES={index})" if gpus else ""
                say(f"worker{index}: {model} loaded{pinned}, consuming its queue")
            say(ready)
            return pipeline.supervisor.watch()
        say(f"workers: {workers[0]} to {workers[1]}, started as the backlog needs")
        from cli.autoscale import Bounds, run_autoscaler

        bounds = Bounds.from_settings(settings)
        bounds.min_workers, bounds.max_workers = workers
        if workers[0] == 0:  # no worker until jobs come: the first job waits for a model to load
            say(f"gateway {ready} (workers start on demand: no model is loaded yet)")
            return run_autoscaler(settings, pipeline, bounds)
        # The ready line once the first worker has its model loaded (the autoscaler starts MIN at once).
        return run_autoscaler(settings, pipeline, bounds,
                              on_first_ready=lambda: say(f"a worker has {model} loaded; {ready}"))
    except StartFailed as e:
        where = f" (logs in {logs_dir})" if logs_dir else ""
        print(f"asyncinfer: the pipeline did not start: {e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nasyncinfer: stopping")
        return 0
    finally:
        pipeline.stop()

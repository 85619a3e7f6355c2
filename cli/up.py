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


def run_pipeline(settings: Settings, *, mesh: str | None = None, workers: tuple[int, int] | None = None) -> int:
    """Redis (when none answers), the gateway and one worker; with `workers` (MIN, MAX), a pool that
    the local autoscaler sizes to the backlog (cli/autoscale.py)."""
    try:
        missing = settings.catalogue().worker_model(settings.model).weights_missing(settings.weights)
    except StartupError as e:
        missing = str(e)
    if missing:
        print(f"asyncinfer up: {missing}", file=sys.stderr)
        return 2
    if (mesh or settings.mesh) == "consul":
        if workers is not None:
            print("asyncinfer up: --workers does not work with the mesh yet (each worker needs a sidecar of its own)",
                  file=sys.stderr)
            return 2
        from cli.up_mesh import run_mesh_pipeline

        return run_mesh_pipeline(settings)
    pipeline = LocalPipeline(env=os.environ.copy(), port=settings.port, host=settings.host, die_with_parent=True)
    stop_on_sigterm()
    try:
        if redis_answers(settings.redis_url):
            print(f"asyncinfer: using the Redis at {settings.redis_url}")
        else:
            data_dir = Path(settings.sqlite_path).parent if settings.store_kind == "sqlite" else Path("asyncinfer-data")
            pipeline.supervisor.adopt("redis", start_redis(settings.redis_url, data_dir / "redis"))
            print(f"asyncinfer: started Redis at {settings.redis_url}")
        pipeline.start(workers=0 if workers else 1, gateway=True, wait_workers=False)
        url = pipeline.url
        print(f"asyncinfer: ready at {url}  (web page {url}/, API docs {url}/docs); Ctrl-C stops")
        if workers is None:
            return pipeline.supervisor.watch()
        from cli.autoscale import Bounds, run_autoscaler

        bounds = Bounds.from_settings(settings)
        bounds.min_workers, bounds.max_workers = workers
        return run_autoscaler(settings, pipeline, bounds)
    except StartFailed as e:
        print(f"asyncinfer: the pipeline did not start: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nasyncinfer: stopping")
        return 0
    finally:
        pipeline.stop()

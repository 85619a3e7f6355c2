"""Ray Serve's asynchronous inference (Ray >= 2.50, alpha): an HTTP ingress enqueues each upload
as a Celery task on Redis and answers its id; a `@task_consumer` deployment runs the Celery worker
(threads) that classifies one image per task; the client polls GET /status/<id> until Celery's
result backend (the same Redis) has the answer.

- POST /submit, the raw upload as the body → {"id": …}. Celery's JSON serialiser takes no bytes, so
  the ingress sends the upload base64-encoded; the consumer decodes the image (no gateway-side
  preprocessing, no batching: Celery hands a handler one task).
- GET /status/<id> → {"status": "PENDING"|"SUCCESS"|…, "result": …}.

Durability is Celery's on Redis (acks late, requeued when a worker is lost), with Redis as the
driver starts it: the bench's Redis, no AOF.

Run by bench/peers/driver.py with the Ray venv: `python -m bench.peers.ray_async PORT REDIS_URL`.
"""

from __future__ import annotations

import base64
import os
import sys
from typing import Any

from ray import serve
from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig
from ray.serve.task_consumer import instantiate_adapter_from_config, task_consumer, task_handler
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.peers.ray_serving import serve_until_sigterm

QUEUE = "classify"
# Threads of the consumer's Celery worker: one per core, each with its own onnxruntime call.
CONSUMER_THREADS = int(os.environ.get("PEER_CONSUMER_THREADS", str(os.cpu_count() or 1)))


def processor_config(redis_url: str) -> TaskProcessorConfig:
    return TaskProcessorConfig(
        queue_name=QUEUE,
        adapter_config=CeleryAdapterConfig(broker_url=redis_url, backend_url=redis_url),
    )


def consumer(config: TaskProcessorConfig) -> Any:
    @serve.deployment(num_replicas=1, max_ongoing_requests=CONSUMER_THREADS, ray_actor_options={"num_cpus": 0})
    @task_consumer(task_processor_config=config)
    class Consumer:
        def __init__(self) -> None:
            from bench.peers.inference import Model

            # Each of the worker's threads runs inference with one thread, not one per core each.
            os.environ.setdefault("PEER_THREADS", "1")
            self.model = Model()

        @task_handler(name="classify")  # type: ignore[untyped-decorator]
        def classify(self, upload_b64: str) -> dict[str, Any]:
            return self.model.predict([self.model.pixels(base64.b64decode(upload_b64))])[0]

    return Consumer


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class Ingress:
    def __init__(self, config: TaskProcessorConfig, consumer: Any) -> None:
        self.adapter = instantiate_adapter_from_config(config)
        self.consumer = consumer  # bound so that Serve deploys it with this application

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "POST":
            upload = base64.b64encode(await request.body()).decode()
            task = self.adapter.enqueue_task_sync("classify", args=[upload])
            return JSONResponse({"id": task.id})
        # The Celery adapter reads the result before the status: a task finishing in between reads
        # SUCCESS with no result yet, which the client takes as "not yet" and asks again.
        task = self.adapter.get_task_status_sync(request.url.path.rsplit("/", 1)[1])
        result = task.result if task.status == "SUCCESS" else None
        return JSONResponse({"status": task.status, "result": result})


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    config = processor_config(redis_url)
    serve_until_sigterm(port, Ingress.bind(config, consumer(config).bind()), "/")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()

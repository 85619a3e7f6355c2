"""The Python client against a load balancer of two gateways (issue: "works against one gateway or a
load balancer of several"): connections spread over both, one gateway SIGKILLed mid-run, and every
image still ends once, with no second job for a retried upload."""

from __future__ import annotations

import threading

import pytest

from asyncinfer_client import Client, Job
from tests.conftest import PipelineFactory
from tests.integration.test_two_gateways import second_gateway
from tests.support import images
from tests.support.load_balancer import load_balancer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

IMAGES = 40
KILL_AFTER = 10  # results


def test_submit_many_through_a_load_balancer_survives_losing_a_gateway(make_pipeline: PipelineFactory) -> None:
    first = make_pipeline(workers=1)
    second = second_gateway(first)
    uploads = [images.jpeg(seed=33_000 + i) for i in range(IMAGES)]
    try:
        with load_balancer([("127.0.0.1", first.port), ("127.0.0.1", second.port)]) as balancer, \
                Client(balancer.url, retry_for_s=60) as client:
            killed = threading.Event()
            results: list[Job] = []
            for _, outcome in client.submit_many(uploads, concurrency=8, timeout_s=120):
                assert isinstance(outcome, Job), outcome
                results.append(outcome)
                if len(results) == KILL_AFTER:
                    assert first.gateway is not None
                    first.gateway.kill()  # its uploads and streams break; the balancer sends the retries on
                    first.gateway.wait(10)
                    killed.set()
            again = [outcome for _, outcome in client.submit_many(uploads, concurrency=8, timeout_s=120)]
            spread = dict(balancer.connections)
    finally:
        second.stop()

    assert killed.is_set()
    assert [job.status for job in results] == ["succeeded"] * IMAGES
    assert len({job.id for job in results}) == IMAGES
    # The same images again (one gateway left): each image's first job, nothing new.
    assert sorted(job.id for job in again if isinstance(job, Job)) == sorted(job.id for job in results)
    assert spread.get(("127.0.0.1", first.port), 0) > 0 and spread.get(("127.0.0.1", second.port), 0) > 0
    print(f"\nconnections per gateway: {sorted(spread.values())}")

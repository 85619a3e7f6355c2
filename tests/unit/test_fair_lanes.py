"""Lanes: each tenant's jobs wait in one lane of their model version, the same on every process."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from api.services import warn_of_shared_lanes
from shared.queue import queue_of
from shared.queue_names import FAIR_LANES, lane_of, model_queues, queue_name


def test_a_tenants_lane_is_the_same_in_every_process() -> None:
    """Not Python's hash, which is salted per process: gateways and recovery must agree."""
    code = "from shared.queue_names import lane_of; print(lane_of('tenant-a'), lane_of('public'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PYTHONPATH": "."}).stdout.split()
    assert [int(n) for n in other] == [lane_of("tenant-a"), lane_of("public")]


def test_every_job_waits_in_one_of_its_models_lanes() -> None:
    lanes = model_queues("mobilenet_v2", "1")
    assert len(set(lanes)) == FAIR_LANES
    tenants = [f"tenant-{i}" for i in range(200)]
    for tenant in tenants:
        doc = {"tenant": tenant, "model": {"name": "mobilenet_v2", "version": "1"}}
        assert queue_of(doc) == queue_name("mobilenet_v2", "1", tenant) == lanes[lane_of(tenant)]
    # Spread: 200 tenants use nearly every lane.
    assert len({lane_of(t) for t in tenants}) >= FAIR_LANES - 2
    assert not set(lanes) & set(model_queues("mobilenet_v2", "2"))


def test_the_gateway_names_configured_tenants_that_share_a_lane(caplog: pytest.LogCaptureFixture) -> None:
    tenants = [f"t{i}" for i in range(FAIR_LANES + 1)]  # more tenants than lanes: some must share
    with caplog.at_level(logging.WARNING):
        warn_of_shared_lanes(tenants)
    assert "share fair lane" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_of_shared_lanes(["tenant-a", "tenant-b"])
    assert caplog.text == ""

"""A worker's SIGTERM before Celery consumes (workers/worker.py): it leaves Consul and exits at once;
during the registration itself, once the registration is held; a second SIGTERM does not cut that
short. The drain of a consuming worker is tested on real processes
(tests/integration/test_worker_drain.py)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from workers.worker import STOPPED_WHILE_STARTING, StopWhileStarting


class Exited(Exception):
    """What the test's exit_process raises in place of os._exit."""


class Registration:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def deregister(self) -> None:
        self.events.append("deregistered")
        signal.raise_signal(signal.SIGTERM)  # a second SIGTERM meanwhile changes nothing


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def stop(events: list[str]) -> Iterator[StopWhileStarting]:
    """The handler, installed for SIGTERM in this process until the test ends; its exit is recorded."""

    def exit_process(code: int) -> None:
        events.append(f"exit {code}")
        raise Exited

    before = signal.getsignal(signal.SIGTERM)
    handler = StopWhileStarting(exit_process)
    signal.signal(signal.SIGTERM, handler)
    yield handler
    signal.signal(signal.SIGTERM, before)


def test_sigterm_while_loading_deregisters_and_exits_at_once(stop: StopWhileStarting, events: list[str]) -> None:
    stop.registration = Registration(events)  # type: ignore[assignment]
    with pytest.raises(Exited):
        signal.raise_signal(signal.SIGTERM)  # its handler runs before the next line
        events.append("went on loading")
    assert events == ["deregistered", f"exit {STOPPED_WHILE_STARTING}"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_sigterm_before_registering_just_exits(stop: StopWhileStarting, events: list[str]) -> None:
    with pytest.raises(Exited):
        signal.raise_signal(signal.SIGTERM)
    assert events == [f"exit {STOPPED_WHILE_STARTING}"]


def test_sigterm_while_registering_waits_for_the_registration_then_undoes_it(
    stop: StopWhileStarting, events: list[str],
) -> None:
    with pytest.raises(Exited), stop.registering():
        signal.raise_signal(signal.SIGTERM)  # the agent has registered the worker, the reply is on its way
        events.append("registration held")
        stop.registration = Registration(events)  # type: ignore[assignment]
    assert events == ["registration held", "deregistered", f"exit {STOPPED_WHILE_STARTING}"]


def test_without_a_sigterm_registering_just_runs(stop: StopWhileStarting, events: list[str]) -> None:
    with stop.registering():
        events.append("registration held")
    assert events == ["registration held"]

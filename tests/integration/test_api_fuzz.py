"""Fuzzing the real gateway with schemathesis: every operation of its live /openapi.json, with every
check schemathesis has (no 5xx, answers that conform to the documented schemas, content types, status
codes and headers, Allow on a 405, schema-valid data accepted, schema-invalid data refused, the stateful
links between operations, …), a bounded number of examples per operation.

Two gateways, no worker (an accepted job stays queued): one without API keys, so that requests reach
the handlers, and one with keys, so that the keys' parsing (X-API-Key, Authorization, ?api_key=, ?token=) is
fuzzed too. Header and form values are drawn from Latin-1, as HTTP carries them, not from ASCII only.

Each run (measured with 11 operations, before the two stream-token routes): about 1,200 examples in the
fuzzing phase, about 2,450 requests per gateway with the coverage and stateful phases (30-40 s on 2 cores). On the code before its fixes: 12 distinct failures
without keys, 31 with, from 4 causes: every 405 lacked `Allow` (the problem handler dropped it), the 405
of /v1/jobs/{id} named GET but not DELETE, the document allowed an empty file and a batch of no files,
and a non-ASCII X-API-Key answered 500 on all 7 /v1 operations. The other values that answered 500 are
rarely drawn by a fuzzer, so test_the_values_that_answered_500_answer_a_problem sends each once.
"""

from __future__ import annotations

import collections
import time
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.engine.recorder import CheckFailureInfo, ScenarioRecorder

from tests.conftest import PipelineFactory
from tests.support import images
from tests.support.http import stream_events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

EXAMPLES_PER_OPERATION = 150

CONFIG: dict[str, Any] = {
    "seed": 20261201,  # the same requests every run; change it to explore others
    "request-timeout": 30,
    "generation": {"max-examples": EXAMPLES_PER_OPERATION, "codec": "latin-1", "database": "none"},
    # A session's stream stays open while the session lives (jobs may join it): read its first event (the
    # counts after the replay), as from a job's stream, rather than wait for 20 that never come.
    "operations": [{"include-path": "/v1/sessions/{session_id}/events", "max-stream-events": 1}],
    "checks": {
        # A schema-valid upload is bytes; whether they decode as an image (413 over 40 MP, 415 not an
        # image type, 422 corrupt or too small) is beyond what a schema can say (docs/contract.md).
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "404", "409", "413", "415", "422", "429"],
        },
    },
}


def describe(recorder: ScenarioRecorder, case_id: str, failure: CheckFailureInfo) -> str:
    """A failure, how to reproduce it, and what the gateway answered."""
    interaction = recorder.interactions.get(case_id)
    response = interaction.response if interaction is not None else None
    answer = f"{response.status_code} {response.content[:300]!r}" if response is not None else "no answer"
    return f"{failure.failure}\n{failure.code_sample}\n→ {answer}"


def fuzz(url: str) -> tuple[int, collections.Counter[str], dict[tuple[str, str, str], str]]:
    """Run every phase against the gateway at `url`: how many operations, the examples run per
    phase, and one code sample per distinct failure (operation, check, title)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG))
    operations = sum(1 for _ in schema.get_all_operations())
    examples: collections.Counter[str] = collections.Counter()
    failures: dict[tuple[str, str, str], str] = {}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            examples[event.phase.value] += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        key = (event.label or "stateful", check.name, check.failure_info.failure.title)
                        failures.setdefault(key, describe(event.recorder, case_id, check.failure_info))
        elif isinstance(event, events.FatalError | events.NonFatalError):
            failures.setdefault(("engine", type(event).__name__, ""), str(event))
    return operations, examples, failures


@pytest.mark.slow
@pytest.mark.parametrize("keys", ["without API keys", "with API keys"])
def test_the_gateway_survives_fuzzing(make_pipeline: PipelineFactory, keys: str) -> None:
    env = {"ASYNCINFER_API_KEYS": "fuzz-key:fuzz"} if keys == "with API keys" else {}
    pipeline = make_pipeline(workers=0, **env)
    started = time.monotonic()

    operations, examples, failures = fuzz(pipeline.url)

    print(f"\n{keys}: {operations} operations, examples per phase {dict(examples)}, "
          f"{len(failures)} distinct failures, {time.monotonic() - started:.0f} s")
    report = "\n\n".join(f"{' / '.join(key)}\n{sample}" for key, sample in failures.items())
    assert not failures, report
    log = pipeline.logs("gateway")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 200):][:4000]


KEY = {"X-API-Key": "key-a"}
BOUNDARY = "b0undary"


def multipart(*parts: tuple[str, str | None, bytes], charset: str = "") -> dict[str, Any]:
    """A hand-framed multipart body (name, file name, data), for framings httpx would not send."""
    body = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        + (f'; filename="{filename}"'.encode() if filename is not None else b"") + b"\r\n\r\n" + data + b"\r\n"
        for name, filename, data in parts
    ) + f"--{BOUNDARY}--\r\n".encode()
    content_type = f"multipart/form-data; boundary={BOUNDARY}" + (f"; charset={charset}" if charset else "")
    return {"content": body, "headers": {"Content-Type": content_type, **KEY}}


def test_the_values_that_answered_500_answer_a_problem(make_pipeline: PipelineFactory) -> None:
    """The requests that answered 500 before, all in values the gateway parses by hand, each once
    (the fuzzing above need not draw them every run)."""
    pipeline = make_pipeline(workers=0, ASYNCINFER_API_KEYS="key-a:alice")
    image = images.encode(images.picture(seed=5), "PNG")
    file = ("file", "a.png", image)

    def send(method: str, path: str, **kwargs: Any) -> httpx.Response:
        """On a connection of its own: before, a 500 closed the connection under the next request."""
        return httpx.request(method, f"{pipeline.url}{path}", timeout=30, **kwargs)

    job = send("POST", "/v1/jobs", content=image, headers={"Content-Type": "image/png", **KEY}).json()
    events = f"/v1/jobs/{job['id']}/events"
    cases: dict[str, tuple[httpx.Response, int]] = {
        # str.isdigit() took '²', which int() refuses; 5,000 digits exceed int()'s limit.
        "form top_k '²'": (send("POST", "/v1/jobs", **multipart(file, ("top_k", None, "²".encode()))), 400),
        "form top_k of 5,000 digits": (send("POST", "/v1/jobs", **multipart(file, ("top_k", None, b"9" * 5000))), 400),
        "batch form top_k '²'": (send("POST", "/v1/batches", **multipart(
            ("files", "a.png", image), ("top_k", None, "²".encode()))), 400),
        # secrets.compare_digest refuses str with non-ASCII characters.
        "X-API-Key 'é'": (send("GET", events, headers={"X-API-Key": b"\xe9"}), 401),
        "Authorization 'Bearer é'": (send("GET", f"/v1/jobs/{job['id']}", headers={"Authorization": b"Bearer \xe9"}),
                                     401),
        "?api_key=é": (send("GET", events, params={"api_key": "é"}), 401),
        "?token=é": (send("GET", events, params={"token": "é"}), 401),
        # A multipart charset that decodes the file name to a lone surrogate, which JSON cannot encode.
        "file name with a lone surrogate": (send("POST", "/v1/batches", **multipart(
            ("files", "\\ud800.png", b"not an image"), charset="raw_unicode_escape")), 415),
    }
    wrong = {name: (answer.status_code, answer.headers.get("content-type"), answer.text[:300])
             for name, (answer, status) in cases.items()
             if answer.status_code != status or answer.headers.get("content-type") != "application/problem+json"}
    assert not wrong, wrong
    assert cases["file name with a lone surrogate"][0].json()["errors"][0]["file"] == "?.png"
    # Last-Event-ID that isdigit() took and int() refused: the stream starts from the current state.
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        for value in (b"\xb2", b"9" * 5000):
            sent = stream_events(client, events, headers={**KEY, "Last-Event-ID": value}, limit=1)  # type: ignore[dict-item]
            assert [name for name, _, _ in sent] == ["status"]
    assert "Traceback" not in pipeline.logs("gateway")

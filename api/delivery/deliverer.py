"""The gateway's delivery loop: claim a due delivery, POST the job to its callback_url, record the
outcome on the job (and announce it on the job's event stream), then finish, retry later or bury it.

Delivery is at least once: a gateway that dies after the receiver answered and before the record
is written leaves the claim to come back after its lease, and the receiver sees the same
`webhook-id` again. The job's status is never touched: only its `delivery` record changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from functools import partial

import httpx
from starlette.concurrency import run_in_threadpool

from api.delivery.addresses import target_of
from api.delivery.backoff import RetryPolicy
from api.delivery.queue import Claim, DeliveryQueue
from api.delivery.record import DEAD, DELIVERED, PENDING, Outcome, after_attempt, dead_letter, new_round, unix_s
from api.delivery.signing import secret_key, signed_headers
from api.delivery.subjects import Subject, Subjects, message_id
from api.metrics import WEBHOOKS_GIVEN_UP, record_webhook_attempt
from shared.config import Settings
from shared.errors import CallbackRefused
from shared.events import EventPublisher
from shared.store import JobStore

log = logging.getLogger(__name__)

# The most of a receiver's answer that is read (and then dropped): its status is what counts.
MAX_RESPONSE_BYTES = 4096
USER_AGENT = "asyncinfer-webhooks/1"


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.webhook_max_attempts, max_total_s=settings.webhook_max_total_s,
                       base_s=settings.webhook_backoff_base_s, max_delay_s=settings.webhook_backoff_max_s)


class Deliverer:
    def __init__(self, settings: Settings, store: JobStore, publisher: EventPublisher, queue: DeliveryQueue, *,
                 tls_verify: ssl.SSLContext | bool = True) -> None:
        """`tls_verify`: the system's certificate authorities by default (tests pass their own)."""
        self.settings = settings
        self.subjects = Subjects(store, publisher)
        self.queue = queue
        self.policy = retry_policy(settings)
        self.key = secret_key(settings.webhook_secret.get_secret_value())
        self.timeout_s = settings.webhook_attempt_timeout_s
        # No redirects, no proxies from the environment: the connection goes to the address checked.
        # No kept-alive connections either: the pool knows them by address, and one whose TLS was
        # verified for one host name must not carry a request for another host on that address.
        self.http = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=self.timeout_s,
                                      limits=httpx.Limits(max_keepalive_connections=0), verify=tls_verify)

    async def run_forever(self) -> None:
        """`webhook_concurrency` loops, each taking one due delivery at a time."""
        loops = [asyncio.create_task(self._loop()) for _ in range(self.settings.webhook_concurrency)]
        try:
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            with contextlib.suppress(Exception):
                await self.http.aclose()

    async def _loop(self) -> None:
        while True:
            try:
                claim = await run_in_threadpool(self.queue.claim)
                if claim is None:
                    await asyncio.sleep(self.settings.webhook_poll_interval_s)
                    continue
                await self.deliver(claim)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis or the store away: the claim comes back after its lease
                log.warning("webhook delivery loop: %s: %s; retrying", type(e).__name__, e)
                await asyncio.sleep(self.settings.webhook_poll_interval_s)

    async def deliver(self, claim: Claim) -> None:
        subject = await run_in_threadpool(self.subjects.load, claim.target)
        previous = None if subject is None else subject.record
        if subject is None or not subject.callback_url or (previous or {}).get("state") == DELIVERED:
            # Purged or expired, or a duplicate schedule of a finished delivery: nothing to send.
            await run_in_threadpool(self.queue.finish, claim)
            return
        if not subject.ready:  # a batch with members still open: look again later
            await run_in_threadpool(self.queue.retry_at, claim, time.time() + self.settings.webhook_batch_check_s)
            return
        if previous is not None and previous.get("state") == PENDING and previous.get("next_try_at"):
            due = unix_s(previous["next_try_at"])
            if due > time.time():  # its gateway died after recording, before rescheduling
                await run_in_threadpool(self.queue.retry_at, claim, due)
                return
        record = new_round(previous, subject.callback_url)
        started = time.time()
        outcome = await self.attempt(subject)
        record_webhook_attempt(outcome.result, outcome.duration_ms)
        record = after_attempt(record, outcome, started, time.time(), self.policy)
        await run_in_threadpool(self.subjects.record, claim.target, lambda _current: record)
        if record["state"] == DELIVERED:
            held = await run_in_threadpool(self.queue.finish, claim)
        elif record["state"] == DEAD:
            log.warning("webhook for %s given up after %d attempts: %s", claim.target, record["attempts"],
                        record["last_error"])
            WEBHOOKS_GIVEN_UP.inc()
            held = await run_in_threadpool(self.queue.bury, claim, dead_letter(claim.target, record))
        else:
            held = await run_in_threadpool(self.queue.retry_at, claim, unix_s(record["next_try_at"]))
        if not held:
            log.warning("webhook for %s: its claim's lease ended during the attempt", claim.target)

    async def attempt(self, subject: Subject) -> Outcome:
        """One POST of the job or batch to its callback_url, within the attempt timeout; never raises."""
        started = time.monotonic()

        def outcome(status: int | None, error: str | None) -> Outcome:
            return Outcome(status, error, (time.monotonic() - started) * 1000)

        try:
            target = await run_in_threadpool(partial(target_of, self.settings, str(subject.callback_url)))
        except CallbackRefused as e:  # DNS changed since the submit
            return outcome(None, e.detail)
        body = subject.payload
        headers = {**signed_headers(self.key, message_id(subject.target), int(time.time()), body),
                   "host": target.host_header, "user-agent": USER_AGENT}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.http.stream("POST", target.pinned_url, content=body, headers=headers,
                                            extensions=extensions) as response:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                    status = response.status_code
        except TimeoutError:
            return outcome(None, f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as e:
            return outcome(None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        return outcome(status, None if 200 <= status < 300 else f"answered {status}")

"""When a failed delivery is tried again, and when it is given up (the dead-letter list)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    max_total_s: float
    base_s: float
    max_delay_s: float

    def delay_s(self, failed_attempts: int, draw: Callable[[], float] = random.random) -> float:
        """The wait after the `failed_attempts`-th failure: doubling from `base_s`, at most `max_delay_s`,
        with half of it random, so that receivers coming back are not hit by every delivery at once."""
        ceiling = min(self.max_delay_s, self.base_s * 2.0 ** (failed_attempts - 1))
        return float(ceiling / 2 + draw() * ceiling / 2)

    def next_try(self, failed_attempts: int, first_attempt_at: float, now: float,
                 draw: Callable[[], float] = random.random) -> float | None:
        """The time of the next attempt, or None when the bounds say to give up."""
        if failed_attempts >= self.max_attempts:
            return None
        at = now + self.delay_s(failed_attempts, draw)
        return None if at > first_attempt_at + self.max_total_s else at

"""Traffic splits between the versions of one model: which version a job that names only the model
goes to. A split lives in Redis (`asyncinfer models split` writes it), so every gateway follows a
change within a second, without a restart. The choice is sticky: the same key (the client's
Idempotency-Key, else the image's sha256) always lands on the same version while the split stands,
so a retry sees the version its first attempt saw."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import redis

from shared.models.catalogue import version_order

log = logging.getLogger(__name__)

SPLIT_KEY_PREFIX = "asyncinfer:split:"
# How long a gateway keeps a split it read before it reads it again.
SPLIT_CACHE_S = 1.0
_WEIGHT = re.compile(r"([A-Za-z0-9][A-Za-z0-9_-]{0,31})=([0-9]+(?:\.[0-9]+)?)")


class SplitInvalid(ValueError):
    pass


def parse_split(items: list[str]) -> dict[str, float]:
    """`["1=90", "2=10"]` → {"1": 90.0, "2": 10.0}; weights are relative, at least one positive."""
    weights: dict[str, float] = {}
    for item in items:
        found = _WEIGHT.fullmatch(item.strip())
        if found is None:
            raise SplitInvalid(f"{item!r}: use VERSION=WEIGHT, e.g. 1=90 2=10")
        weights[found.group(1)] = float(found.group(2))
    if not any(weight > 0 for weight in weights.values()):
        raise SplitInvalid("a split needs at least one version with a weight above 0")
    return weights


def bucket_of(sticky_key: str) -> float:
    """A point in [0, 1) that depends on the key alone."""
    return int.from_bytes(hashlib.sha256(sticky_key.encode()).digest()[:8], "big") / 2**64


def choose(weights: Mapping[str, float], sticky_key: str) -> str:
    """The version whose share of [0, 1), in version order, holds the key's point."""
    versions = sorted((v for v, w in weights.items() if w > 0), key=version_order)
    total = sum(weights[v] for v in versions)
    point, edge = bucket_of(sticky_key) * total, 0.0
    for version in versions:
        edge += weights[version]
        if point < edge:
            return version
    return versions[-1]


class TrafficSplits:
    """The splits in Redis, read at most once a second per model."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def weights(self, name: str) -> dict[str, float]:
        """The split of model `name`; empty when it has none (its latest version takes all)."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(name)
        if cached is not None and now - cached[0] < SPLIT_CACHE_S:
            return cached[1]
        raw = self.client.hgetall(SPLIT_KEY_PREFIX + name)
        weights = {_text(version): float(weight) for version, weight in raw.items()}
        with self._lock:
            self._cache[name] = (now, weights)
        return weights

    def served_weights(self, name: str, served: Collection[str]) -> dict[str, float]:
        """The split's weights of the versions in `served` that have a share; empty: no split applies."""
        return {version: weight for version, weight in self.weights(name).items() if version in served and weight > 0}

    def shares(self, name: str, versions: Sequence[str]) -> dict[str, float]:
        """Each version's percent of the jobs that name only the model: by the split, else all of
        them to the latest (`versions` oldest first)."""
        weights = self.served_weights(name, versions)
        if not weights:
            return {versions[-1]: 100.0}
        total = sum(weights.values())
        return {version: 100 * weight / total for version, weight in weights.items()}

    def set(self, name: str, weights: Mapping[str, float]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(SPLIT_KEY_PREFIX + name)
        pipe.hset(SPLIT_KEY_PREFIX + name, mapping={version: str(weight) for version, weight in weights.items()})
        pipe.execute()

    def clear(self, name: str) -> None:
        self.client.delete(SPLIT_KEY_PREFIX + name)

    def chooser(self, sticky_key: Callable[[], str], served: Callable[[str], Mapping[str, object]],
                latest: Callable[[str], str]) -> Callable[[str], str]:
        """A `choose_version` for Catalogue.resolve: by the split when the model has one (versions
        the catalogue does not serve left out), else its latest version. `sticky_key` is called
        only when a split applies (it may read the upload)."""

        def choose_version(name: str) -> str:
            weights = self.served_weights(name, served(name).keys())
            if not weights:
                return latest(name)
            return choose(weights, sticky_key())

        return choose_version


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

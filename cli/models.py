"""`asyncinfer models list` and `asyncinfer models split`: the catalogue as this host sees it, and the
traffic splits in Redis that every gateway follows."""

from __future__ import annotations

import sys

import redis

from shared.config import Settings
from shared.errors import UnknownModel
from shared.models.traffic import SplitInvalid, TrafficSplits, parse_split


def _splits(settings: Settings) -> TrafficSplits:
    return TrafficSplits(redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2))


def list_models(settings: Settings) -> int:
    catalogue = settings.catalogue()
    splits = _splits(settings)
    for name, versions in catalogue.models().items():
        shares = splits.shares(name, list(versions))
        for version, spec in versions.items():
            print(f"{spec.ref}\t{shares.get(version, 0.0):.0f}%\t{spec.input.width}x{spec.input.height}\t{spec.source}")
    for source, problem in catalogue.problems.items():
        print(f"asyncinfer models: {source} failed to load: {problem}", file=sys.stderr)
    return 0


def set_split(settings: Settings, model: str, items: list[str], *, clear: bool) -> int:
    try:
        versions = settings.catalogue().versions(model)
        if clear:
            _splits(settings).clear(model)
            print(f"asyncinfer models: {model}: no split; version {list(versions)[-1]} takes all")
            return 0
        weights = parse_split(items)
        unknown = sorted(set(weights) - set(versions))
        if unknown:
            raise SplitInvalid(f"model {model} has no version {', '.join(unknown)}; it has: {', '.join(versions)}")
        _splits(settings).set(model, weights)
    except (UnknownModel, SplitInvalid) as e:
        print(f"asyncinfer models: {getattr(e, 'detail', e)}", file=sys.stderr)
        return 2
    except redis.RedisError as e:
        print(f"asyncinfer models: Redis does not answer at {settings.redis_url}: {e}", file=sys.stderr)
        return 1
    total = sum(weights.values())
    print(f"asyncinfer models: {model}: " + ", ".join(f"{v} {100 * w / total:.0f}%" for v, w in weights.items()))
    return 0

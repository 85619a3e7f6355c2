"""Summaries of noisy measurements: medians with their spread, percentiles of latencies."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and the range of repeated measurements (the machine is shared and noisy)."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def latency_summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    values_ms = [v * 1000 for v in values_s]
    return {
        "p50": percentile(values_ms, 50),
        "p95": percentile(values_ms, 95),
        "p99": percentile(values_ms, 99),
        "n": len(values_ms),
    }


def fmt_spread(summary: dict[str, float], digits: int = 0) -> str:
    """`42 (38–45)`: median and range."""
    if not summary.get("n"):
        return "–"
    f = f"{{:.{digits}f}}"
    return f"{f.format(summary['median'])} ({f.format(summary['min'])}–{f.format(summary['max'])})"

"""The benchmark's arithmetic and report, on made-up figures (the full run takes minutes)."""

from __future__ import annotations

import math

from bench.load import LoadResult, measured_window
from bench.report import CeilingChoice, best_ceiling, paired_median, render
from bench.stats import percentile, spread


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert math.isnan(percentile([], 50))
    assert spread([3, 1, 2]) == {"median": 2, "min": 1, "max": 3, "n": 3}


def test_only_completions_inside_the_window_count() -> None:
    result = LoadResult()
    for latency_s, done in [(0.1, 0.5), (0.2, 1.5), (0.3, 2.5), (0.4, 9.0)]:
        result.latencies_s.append(latency_s)
        result.completed_at.append(done)
    kept = measured_window(started=0.0, warmup_s=1.0, duration_s=2.0, result=result)
    assert kept.latencies_s == [0.2, 0.3] and kept.total_completed == 4
    assert kept.throughput_per_s == 1.0


# What every report states about its run.
RUN = {"started": "t", "images": "8 images", "duration_s": 1.0,
       "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 24, "python": "3.11", "load_average_at_start": (1, 1, 1)}}


def figures(rate: float, cpu_ms: float) -> dict[str, object]:
    return {"images_per_s": {"median": rate, "min": rate, "max": rate, "n": 1}, "cpu_ms_per_image": {"median": cpu_ms}}


def ceiling(rates: list[float], pooled: list[float]) -> dict[str, object]:
    """`rates`: decode then infer, at batch 1 and 8; `pooled`: with 1 and 2 decoding threads beside, at
    batch 8 (at batch 1, half as fast)."""
    rows = [{"batch_size": size, **figures(rate, 20.0),
             "inference_only_images_per_s": {"median": 200, "min": 190, "max": 210, "n": 3},
             "decode_pool": {"1": figures(pooled[0] * size / 16 + pooled[0] / 2, 19.0),
                             "2": figures(pooled[1] * size / 16 + pooled[1] / 2, 18.0)}}
            for size, rate in zip((1, 8), rates, strict=True)]
    one = {"median": 12.0, "min": 10.0, "max": 20.0, "n": 9}
    return {"rows": rows, "batch1_latency_ms": one, "decode_ms": one}


def load(rate: float, p50: float) -> dict[str, object]:
    return {"images_per_s": rate, "images_per_s_bins": {"median": rate, "min": rate - 1, "max": rate + 1, "n": 3},
            "latency_ms": {"p50": p50, "p95": p50 * 2, "p99": p50 * 3, "n": 100}, "errors": 0}


def test_report_states_every_target() -> None:
    spread_of = lambda values: {"median": sorted(values)[len(values) // 2], "min": min(values), "max": max(values), "n": len(values)}  # noqa: E731
    results = {
        **RUN,
        "ceiling": {"onnxruntime": ceiling([50.0, 60.0], [55.0, 58.0])},
        "e2e": {"onnxruntime": {
            "ceiling_batch_size": 8, "ceiling_decoders": 0, "ceiling_cpu_ms_per_image": 20.0,
            "rounds": [{"ceiling_images_per_s": 60.0, "images_per_s": 57.0, "ratio": 0.95,
                        "worker_preprocessing_images_per_s": 40.0}],
            "ratio": spread_of([0.95]),
            "saturation": load(57.0, 900), "light": load(30, 22.0), "light_overhead_ms": spread_of([10.0, 9.0, 12.0]),
            "half": {"rate_per_s": 28.5, **load(28.5, 40)},
            "cpu_ms_per_image": {"gateway": 18.0, "worker0": 13.0, "clients": 1.0, "total": 32.0},
            "batches": {"mean_batch_size": 12.0},
            "worker_preprocessing": {"saturation": load(40.0, 1200), "cpu_ms_per_image": {"total": 45.0},
                                     "batches": {"mean_batch_size": 9.0}},
        }},
        "naive": {"clients": 48, "saturation": load(14.25, 3000)},
        "fanout": [{"subscribers": 5000, "jobs": 500, "finish_rate_per_s": 100, "delivered": 5000,
                    "delivery_ms": {"p50": 3, "p95": 10, "p99": 14, "n": 5000}, "max_delivery_ms": 20,
                    "p99_ms_over_runs": spread_of([14, 12, 30]),
                    "gateway_rss_mb": {"idle": 98, "connected": 400, "peak": 401},
                    "cores_busy": {"gateway": 0.3, "subscribers": 0.1}}],
    }
    assert best_ceiling(results["ceiling"]["onnxruntime"]) == CeilingChoice(60.0, 20.0, 8, 0)
    faster_beside = ceiling([50.0, 60.0], [55.0, 72.0])
    assert best_ceiling(faster_beside) == CeilingChoice(72.0, 18.0, 8, 2)
    assert paired_median(results, "onnxruntime", "light_overhead_ms") == 10.0
    markdown = render(results)
    assert "saturated / ceiling = 0.95 (target ≥ 0.9): met" in markdown
    assert "saturated / naive = 4.0× (target ≥ 6×): MISSED" in markdown
    assert "light-load overhead p50 = 10.0 ms (target ≤ 10 ms): met" in markdown
    assert "5000 SSE subscribers (10 per job): p99 = 14 ms, median of 3 runs (target ≤ 50 ms): met" in markdown
    # (18 + 13) CPU ms per image without the load generator, against the ceiling's 20.
    assert "CPU per image, pipeline (gateway + worker + Redis) / ceiling = 1.55 (target ≤ 1.15): MISSED" in markdown
    assert "| worker | 40.0" in markdown


def test_report_renders_the_scaling_tables() -> None:
    step_row = {"jobs": 50, "succeeded": 50, "latency_ms": {"p50": 80.0, "p95": 150.0, "p99": 210.0, "n": 50},
                "worker_seconds": 22.0, "max_live_workers": 1,
                "predicted_wait_error_s": {"median": 0.11, "p90": 0.13, "n": 46}}
    results = {
        **RUN,
        "worker_counts": [{"workers": 2, "threads_per_worker": 1, **load(26.7, 577)}],
        "step": {"phases": [[5.0, 0.0], [20.0, 20.0]], "max_workers": 2, "scaling_env": {},
                 "fixed": step_row, "autoscaled": {**step_row, "worker_seconds": 9.0, "cold_start_s": 12.5}},
        "gateway_processes": {"clients": 16, "rows": [
            {"gateway_processes": count, "jobs_per_s": spread([rate, rate + 2, rate - 2]),
             "over_first": spread([ratio] * 3), "p99_ms": spread([300.0] * 3), "cpu_ms_per_job": spread([14.0] * 3)}
            for count, rate, ratio in ((1, 100.0, 1.0), (2, 150.0, 1.5))]},
    }

    markdown = render(results)

    expected = ["| 2 | 1 | 26.7 (26–28) | 577 / 1154 / 1731 |",
                "| fixed | 50 (50) | 80 / 150 / 210 | 22 | 1 | 0.11 / 0.13 (n=46) |",
                "| autoscaled | 50 (50) | 80 / 150 / 210 | 9 |",
                "Cold start (the burst's first job on a pool at zero, submit to result): 12.5 s.",
                "5 s at 0/s, 20 s at 20/s",
                "| 2 | 150.0 (148.0–152.0) | 1.50 (1.50–1.50) | 300 (300–300) | 14.0 (14.0–14.0) |"]
    assert [line for line in expected if line not in markdown] == []


def test_the_peers_report_states_its_targets() -> None:
    from bench.peers.report import target_lines

    def row(rate: float, p95: float) -> dict[str, object]:
        return {"images_per_s": rate, "latency_ms": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.2}}

    systems = {"asyncinfer": row(60.0, 400), "bentoml-sync": row(50.0, 380), "ray-sync": row(45.0, 500),
               "ray-async": row(15.0, 1000), "bentoml-task": row(16.0, 1100)}
    results = {"plan": {"clients": [16]},
               "systems": {name: {"by_clients": {"16": figures}} for name, figures in systems.items()}}

    assert target_lines(results) == [
        "- 16 clients: asyncinfer / the fastest peer (bentoml-sync) = 1.20× (target ≥ 1.15×), p95 400 ms against "
        "380 ms (target: equal or lower): MISSED",
        "- 16 clients: asyncinfer / ray-async = 4.0× (target ≥ 4×): met",
        "- 16 clients: asyncinfer / bentoml-task = 3.8× (target ≥ 4×): MISSED",
    ]


def test_the_submit_report_sets_batches_against_single_jobs() -> None:
    cpu = lambda gateway: {"redis": 0.5, "clients": 0.3, "gateway": gateway, "total": gateway + 0.8}  # noqa: E731
    results = {
        **RUN,
        "submit": {"clients": 8, **load(80.0, 90), "cpu_ms_per_job": cpu(18.0)},
        "submit_small": {"clients": 8, **load(150.0, 50), "cpu_ms_per_job": cpu(7.5), "preprocess_cpu_ms": 0.5},
        "submit_small_batches": {"clients": 8, "jobs_per_request": 16, **load(400.0, 200), "cpu_ms_per_job": cpu(4.0)},
    }
    markdown = render(results)
    # Outside decoding: 7.5 - 0.5 = 7 ms one at a time, 4 - 0.5 = 3.5 ms in batches, half as much.
    assert "the gateway outside decoding 7.00 ms." in markdown
    assert "/v1/batches 16 at a time (multipart): 400.0 jobs/s" in markdown
    assert "the gateway outside decoding 3.50 ms, 0.50× one job at a time." in markdown
    assert "gateway CPU per accepted job outside decoding = 7.00 ms (target ≤ 2 ms): MISSED" in markdown

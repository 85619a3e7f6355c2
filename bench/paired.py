"""One runtime measured in alternating rounds: the ceiling process and the pipeline take turns
on the machine, so that other tenants' noise hits both alike and each round gives a ratio.

Per round: ceiling throughput at its best arrangement (batch size, decoding beside the forward
pass or not), then the saturated pipeline (and, for the
preprocessing comparison, a second pipeline whose workers decode). Then light-load rounds: the
ceiling's batch-1 latency over the image set, then one client through the pipeline. Last, one
phase at half the saturated rate.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.e2e import CpuMeter, batch_sizes_from_logs, load_summary, pipeline_pids
from bench.imageset import BenchImage
from bench.load import LoadResult, closed_loop, open_loop
from bench.plan import Plan
from bench.profiling import Profiler
from bench.report import CeilingChoice, best_ceiling
from bench.services import Services
from bench.stats import latency_summary_ms, percentile, spread
from cli.pipeline import LocalPipeline
from cli.processes import REPO_ROOT


class CeilingProcess:
    """`python -m bench.ceiling --serve`: builds its table first, then measures on request."""

    def __init__(self, runtime: str, image_dir: Path, plan: Plan, workdir: Path) -> None:
        out = workdir / f"ceiling-{runtime}.json"
        command = [sys.executable, "-m", "bench.ceiling", "--runtime", runtime, "--images", str(image_dir),
                   "--batch-sizes", ",".join(map(str, plan.batch_sizes)), "--duration-s", str(plan.ceiling_s),
                   "--out", str(out), "--serve"]
        with open(workdir / f"ceiling-{runtime}.log", "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True)
        self._answer()  # {"ready": true} once the table is written
        self.table: dict[str, Any] = json.loads(out.read_text())

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the ceiling process exited with {self.process.wait()}")
        return json.loads(line)  # type: ignore[no-any-return]

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def throughput(self, choice: CeilingChoice, duration_s: float) -> float:
        answer = self._ask(f"throughput {choice.batch_size} {duration_s} {choice.decoders}")
        return float(statistics.median(answer["images_per_s"]))

    def batch1_ms(self) -> list[float]:
        return list(self._ask("batch1")["latency_ms"])

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(30)


async def saturate(pipeline: LocalPipeline, images: list[BenchImage], plan: Plan, meter: CpuMeter) -> LoadResult:
    meter.resume()
    result = await closed_loop("127.0.0.1", pipeline.port, images, clients=plan.saturation_clients,
                               duration_s=plan.round_s, warmup_s=plan.warmup_s)
    meter.pause(result.total_completed)
    return result


def merged(results: list[LoadResult]) -> dict[str, Any]:
    """One summary of several rounds: the median round's rate, all latencies together."""
    rates = [result.throughput_per_s for result in results]
    latencies = [latency for result in results for latency in result.latencies_s]
    errors = [error for result in results for error in result.errors]
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_bins": spread(rates),  # here: the spread over rounds
        "latency_ms": latency_summary_ms(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def measure_runtime(
    services: Services, runtime: str, image_dir: Path, images: list[BenchImage], plan: Plan, workdir: Path,
    profiler: Profiler, *, compare_worker_preprocessing: bool,
) -> dict[str, Any]:
    import asyncio

    ceiling = CeilingProcess(runtime, image_dir, plan, workdir)
    pipelines: list[LocalPipeline] = []
    try:
        best = best_ceiling(ceiling.table)
        main = services.pipeline(workers=1, ASYNCINFER_RUNTIME=runtime)
        pipelines.append(main)
        other = None
        if compare_worker_preprocessing:
            other = services.pipeline(workers=1, ASYNCINFER_RUNTIME=runtime, ASYNCINFER_PREPROCESS_AT="worker")
            pipelines.append(other)
        meters = {id(p): CpuMeter(pipeline_pids(p, services.redis.pid)) for p in pipelines}
        rounds: list[dict[str, float]] = []
        saturated: list[LoadResult] = []
        decoded_in_worker: list[LoadResult] = []
        for index in range(plan.rounds):
            ceiling_rate = ceiling.throughput(best, plan.round_s)
            if index == plan.rounds - 1:  # profile one round, if asked
                pids = pipeline_pids(main, services.redis.pid)
                profiler.start(f"e2e-{runtime}", {k: v for k, v in pids.items() if k != "redis"}, plan.round_s)
            saturated.append(asyncio.run(saturate(main, images, plan, meters[id(main)])))
            row = {"ceiling_images_per_s": ceiling_rate, "images_per_s": saturated[-1].throughput_per_s}
            if other is not None:
                decoded_in_worker.append(asyncio.run(saturate(other, images, plan, meters[id(other)])))
                row["worker_preprocessing_images_per_s"] = decoded_in_worker[-1].throughput_per_s
            row["ratio"] = row["images_per_s"] / ceiling_rate
            rounds.append(row)
        report: dict[str, Any] = {
            "clients": plan.saturation_clients,
            "ceiling_batch_size": best.batch_size,
            "ceiling_decoders": best.decoders,
            "ceiling_cpu_ms_per_image": best.cpu_ms_per_image,
            "rounds": rounds,
            "ratio": spread([row["ratio"] for row in rounds]),
            "saturation": merged(saturated),
            "cpu_ms_per_image": meters[id(main)].totals(),
            "batches": batch_sizes_from_logs(main),
        }
        if other is not None:
            report["worker_preprocessing"] = {
                "saturation": merged(decoded_in_worker),
                "cpu_ms_per_image": meters[id(other)].totals(),
                "batches": batch_sizes_from_logs(other),
            }
            other.stop()

        host, port = "127.0.0.1", main.port
        light: list[LoadResult] = []
        overheads_ms = []
        for _ in range(plan.rounds):
            reference_ms = ceiling.batch1_ms()
            light.append(asyncio.run(closed_loop(host, port, images, clients=1, duration_s=plan.light_round_s,
                                                 warmup_s=0.5)))
            e2e_p50_ms = percentile([latency * 1000 for latency in light[-1].latencies_s], 50)
            overheads_ms.append(e2e_p50_ms - percentile(reference_ms, 50))
        report["light"] = merged(light)
        report["light_overhead_ms"] = spread(overheads_ms)

        rate = report["saturation"]["images_per_s"] / 2
        half = asyncio.run(open_loop(host, port, images, rate_per_s=rate, duration_s=plan.half_s, warmup_s=1.0))
        report["half"] = {"rate_per_s": rate, **load_summary(half)}
        report["env"] = {"ASYNCINFER_RUNTIME": runtime}
        return {"ceiling": ceiling.table, "e2e": report}
    finally:
        for pipeline in pipelines:
            pipeline.stop()
        ceiling.close()

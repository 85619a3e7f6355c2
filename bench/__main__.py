"""`python -m bench [--quick] [--profile]`: every benchmark in one run, on one image set; writes
bench/results/<time>.json and .md (and latest.*), and prints the Markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.e2e import measure_naive, run
from bench.fanout import measure_fanout
from bench.imageset import describe, image_set, save_image_dir
from bench.paired import measure_runtime
from bench.plan import FULL, QUICK, Plan
from bench.profiling import Profiler
from bench.report import render
from bench.scaling import measure_step, measure_worker_counts
from bench.services import Services
from bench.stats import spread
from bench.submit_rate import (
    batch_submitter,
    measure_gateway_processes,
    measure_submit_rate,
    preprocess_cpu_ms,
    small_image,
)
from bench.worker_io import measure_worker_io

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("pipeline", "naive", "fanout", "submit", "processes", "scaling", "worker_io")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(), "load_average_at_start": os.getloadavg(),
    }


def fanout_scenario(services: Services, image: Any, plan: Plan, subscribers: int, per_job: int, rate: float,
                    profiler: Profiler) -> dict[str, Any]:
    """Repeated runs of one fan-out scenario; the run with the median p99, and the p99 range."""
    runs = [measure_fanout(services, image, subscribers=subscribers, jobs=max(1, subscribers // per_job),
                           finish_rate_per_s=rate, profiler=profiler if index == 0 else None)
            for index in range(plan.fanout_repeats)]
    runs.sort(key=lambda row: row["delivery_ms"]["p99"])
    return {**runs[len(runs) // 2], "p99_ms_over_runs": spread([row["delivery_ms"]["p99"] for row in runs])}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run of every part")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway and worker under load")
    parser.add_argument("--runtimes", default="keras,onnxruntime")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    runtimes = args.runtimes.split(",")
    sections = set(args.only.split(","))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = RESULTS / f"run-{stamp}"
    workdir.mkdir(parents=True)
    profiler = Profiler(workdir / "profiles" if args.profile else None)
    results: dict[str, Any] = {"plan": plan.__dict__, "machine": machine(), "started": stamp, "quick": args.quick}
    started = time.monotonic()

    log("generating the image set")
    image_dir = workdir / "images"
    images = image_set(plan.images)
    save_image_dir(images, image_dir)  # the ceiling processes read the set from here
    results["images"] = describe(images)

    services = Services(workdir / "services")
    try:
        if "pipeline" in sections:
            results["ceiling"], results["e2e"] = {}, {}
            for runtime in runtimes:
                log(f"ceiling and pipeline in alternating rounds, {runtime}")
                measured = measure_runtime(
                    services, runtime, image_dir, images, plan, workdir, profiler,
                    compare_worker_preprocessing=plan.compare_worker_preprocessing and runtime == "onnxruntime")
                results["ceiling"][runtime], results["e2e"][runtime] = measured["ceiling"], measured["e2e"]
        if "naive" in sections:
            log("naive design")
            process, port = services.naive_server()
            try:
                results["naive"] = run(measure_naive(port, images, clients=plan.naive_clients,
                                                     duration_s=plan.rounds * plan.round_s, warmup_s=plan.warmup_s))
            finally:
                process.terminate()
                process.wait(30)
        if "fanout" in sections:
            results["fanout"] = []
            for subscribers, per_job, finish_rate_per_s in plan.fanout:
                log(f"SSE fan-out, {subscribers} subscribers, {per_job} per job, {plan.fanout_repeats} runs")
                results["fanout"].append(
                    fanout_scenario(services, images[0], plan, subscribers, per_job, finish_rate_per_s, profiler))
        if "submit" in sections:
            log("submit rate, no worker")
            results["submit"] = measure_submit_rate(
                services, images, clients=plan.submit_clients, duration_s=plan.submit_s, warmup_s=plan.warmup_s)
            log("submit rate, no worker, one small image: admission without the cost of decoding")
            small = small_image()
            results["submit_small"] = {
                **measure_submit_rate(services, [small], clients=plan.submit_clients, duration_s=plan.submit_s,
                                      warmup_s=plan.warmup_s, profiler=profiler, phase="submit_small"),
                "preprocess_cpu_ms": preprocess_cpu_ms(small)}
            log(f"submit rate, no worker, the small image in batches of {plan.submit_batch_size}")
            results["submit_small_batches"] = measure_submit_rate(
                services, [small], clients=plan.submit_clients, duration_s=plan.submit_s, warmup_s=plan.warmup_s,
                operation=batch_submitter(small, plan.submit_batch_size), jobs_per_request=plan.submit_batch_size)
        if "processes" in sections:
            log(f"submit rate, no worker, with 1 and 2 gateway processes, {plan.gateway_process_rounds} rounds")
            results["gateway_processes"] = measure_gateway_processes(
                services, images, counts=(1, 2), rounds=plan.gateway_process_rounds, clients=2 * plan.submit_clients,
                duration_s=plan.submit_s, warmup_s=plan.warmup_s)
        if "scaling" in sections:
            log(f"saturated throughput with {', '.join(map(str, plan.worker_counts))} workers")
            results["worker_counts"] = measure_worker_counts(
                services, images, counts=plan.worker_counts, clients=plan.saturation_clients,
                duration_s=plan.worker_count_s, warmup_s=plan.warmup_s)
            log(f"a step of load: one fixed worker, then the autoscaler's 0..{plan.step_max_workers}")
            results["step"] = measure_step(services, images, phases=list(plan.step), max_workers=plan.step_max_workers)
        if "worker_io" in sections:
            log("the worker's CPU per image outside the forward pass, batches of 16 and of 1")
            results["worker_io"] = measure_worker_io(f"{services.redis_base}/0", workdir / "worker-io",
                                                     rounds=plan.worker_io_rounds)
    finally:
        services.stop()
    results["profiles"] = profiler.finish()
    results["duration_s"] = time.monotonic() - started

    markdown = render(results)
    for name in (stamp, "latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
        (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)
    log(f"done in {results['duration_s']:.0f}s: {RESULTS / (stamp + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

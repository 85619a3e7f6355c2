"""`python -m bench [--quick] [--profile]`: every benchmark in one run, on one image set; writes
bench/results/<time>.json and .md (and latest.*), and prints the Markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.e2e import Durations, batch_sizes_from_logs, measure_end_to_end, measure_naive, pipeline_pids, run
from bench.fanout import measure_fanout
from bench.imageset import describe, image_set, load_image_dir, save_image_dir
from bench.plan import FULL, QUICK, Plan
from bench.profiling import Profiler
from bench.report import render
from bench.services import Services
from bench.submit_rate import measure_submit_rate

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("ceiling", "e2e", "naive", "fanout", "submit")


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


def run_ceiling(runtime: str, image_dir: Path, plan: Plan, workdir: Path) -> dict[str, Any]:
    out = workdir / f"ceiling-{runtime}.json"
    command = [sys.executable, "-m", "bench.ceiling", "--runtime", runtime, "--images", str(image_dir),
               "--batch-sizes", ",".join(map(str, plan.batch_sizes)), "--duration-s", str(plan.ceiling_s),
               "--out", str(out)]
    with open(workdir / f"ceiling-{runtime}.log", "wb") as output:
        subprocess.run(command, check=True, stdout=output, stderr=output)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def run_end_to_end(services: Services, images: list[Any], plan: Plan, runtime: str, profiler: Profiler,
                   *, light: bool = True, **env: str) -> dict[str, Any]:
    durations = Durations(plan.saturation_s, plan.light_s, plan.half_s, plan.warmup_s)
    pipeline = services.pipeline(workers=1, ASYNCINFER_RUNTIME=runtime, **env)
    try:
        pids = pipeline_pids(pipeline, services.redis.pid)
        tag = "-".join([runtime, *(value for value in env.values())])
        profiler.start(f"e2e-{tag}", {k: v for k, v in pids.items() if k != "redis"}, plan.saturation_s)
        report = run(measure_end_to_end(pipeline.url, images, durations, saturation_clients=plan.saturation_clients,
                                        pids=pids, light=light, batch_stats=lambda: batch_sizes_from_logs(pipeline)))
        report["env"] = {"ASYNCINFER_RUNTIME": runtime, **env}
        return report
    finally:
        pipeline.stop()


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
    save_image_dir(image_set(plan.images), image_dir)
    images = load_image_dir(image_dir)
    results["images"] = describe(images)

    if "ceiling" in sections:
        results["ceiling"] = {}
        for runtime in runtimes:
            log(f"ceiling, {runtime}")
            results["ceiling"][runtime] = run_ceiling(runtime, image_dir, plan, workdir)

    services = Services(workdir / "services")
    try:
        if "e2e" in sections:
            results["e2e"] = {}
            for runtime in runtimes:
                log(f"end to end, {runtime}")
                results["e2e"][runtime] = run_end_to_end(services, images, plan, runtime, profiler)
            if plan.compare_worker_preprocessing:
                log("end to end, onnxruntime, decoding in the worker (saturation only)")
                results["e2e_worker_preprocessing"] = run_end_to_end(
                    services, images, plan, "onnxruntime", profiler, light=False, ASYNCINFER_PREPROCESS_AT="worker")
        if "naive" in sections:
            log("naive design")
            process, port = services.naive_server()
            try:
                durations = Durations(plan.saturation_s, plan.light_s, plan.half_s, plan.warmup_s)
                results["naive"] = run(measure_naive(port, images, durations, clients=plan.naive_clients))
            finally:
                process.terminate()
                process.wait(30)
        if "fanout" in sections:
            results["fanout"] = []
            for subscribers, per_job, finish_rate_per_s in plan.fanout:
                log(f"SSE fan-out, {subscribers} subscribers, {per_job} per job")
                results["fanout"].append(measure_fanout(
                    services, images[0], subscribers=subscribers, jobs=max(1, subscribers // per_job),
                    finish_rate_per_s=finish_rate_per_s, profiler=profiler))
        if "submit" in sections:
            log("submit rate, no worker")
            results["submit"] = measure_submit_rate(
                services, images, clients=plan.submit_clients, duration_s=plan.submit_s, warmup_s=plan.warmup_s)
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

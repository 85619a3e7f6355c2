"""The benchmark's results as Markdown: the tables the README quotes, and the targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.stats import fmt_spread

TARGET_CEILING_RATIO = 0.90
TARGET_CPU_RATIO = 1.15  # CPU per image end to end (gateway + worker + Redis) / the ceiling's
TARGET_NAIVE_RATIO = 6.0
TARGET_OVERHEAD_MS = 10.0
TARGET_FANOUT_P99_MS = 50.0
TARGET_FANOUT_SUBSCRIBERS = 5000
TARGET_ADMISSION_CPU_MS = 2.0  # gateway CPU per accepted job outside decoding (issue 17)
TARGET_WORKER_CPU_MS = 1.0  # per image outside the forward pass, at batch 16 (bench/worker_io.py)


@dataclass(frozen=True)
class CeilingChoice:
    images_per_s: float
    cpu_ms_per_image: float
    batch_size: int
    decoders: int  # decoding threads beside the forward pass; 0: decode, then infer

    def describe(self) -> str:
        how = f", {self.decoders} decoding thread{'s' if self.decoders > 1 else ''} beside it" if self.decoders else ""
        return f"batch {self.batch_size}{how}"


def best_ceiling(ceiling: dict[str, Any]) -> CeilingChoice:
    """The arrangement with the highest median images/s: batch size, and decoding beside the forward
    pass or not."""
    choices = []
    for row in ceiling["rows"]:
        arrangements = {"0": row, **row.get("decode_pool", {})}
        choices += [CeilingChoice(figures["images_per_s"]["median"], figures["cpu_ms_per_image"]["median"],
                                  row["batch_size"], int(decoders)) for decoders, figures in arrangements.items()]
    return max(choices, key=lambda choice: choice.images_per_s)


def ceiling_of(e2e: dict[str, Any]) -> CeilingChoice:
    """The ceiling arrangement a runtime's pipeline was paired with."""
    return CeilingChoice(float("nan"), e2e.get("ceiling_cpu_ms_per_image", float("nan")), e2e["ceiling_batch_size"],
                         e2e.get("ceiling_decoders", 0))


def pipeline_cpu_over_ceiling(e2e: dict[str, Any]) -> float:
    """CPU per image end to end (gateway + worker + Redis, not the load generator) / the ceiling's."""
    cpu = e2e["cpu_ms_per_image"]
    return float((cpu["total"] - cpu.get("clients", 0.0)) / e2e["ceiling_cpu_ms_per_image"])


def paired_median(results: dict[str, Any], runtime: str, key: str) -> float | None:
    """The median over rounds of a paired figure of `runtime`'s end-to-end results, each round a
    ceiling and a pipeline measurement back to back: `ratio` (pipeline / ceiling throughput) or
    `light_overhead_ms` (pipeline p50 − ceiling batch-1 p50 at light load). None when not measured."""
    e2e = results.get("e2e", {}).get(runtime)
    return None if not e2e or key not in e2e else float(e2e[key]["median"])


def _range(bins: dict[str, Any]) -> str:
    return f"{bins['min']:.0f}–{bins['max']:.0f}" if bins.get("n") else "–"


def _lat(summary: dict[str, Any]) -> str:
    return f"{summary['p50']:.0f} / {summary['p95']:.0f} / {summary['p99']:.0f}"


def _cpu(cpu: dict[str, float]) -> str:
    parts = [f"{name} {value:.1f}" for name, value in cpu.items() if name != "total"]
    return f"{cpu.get('total', 0):.1f} ({', '.join(parts)})"


def ceiling_table(results: dict[str, Any]) -> list[str]:
    ceiling = results["ceiling"]
    runtimes = list(ceiling)
    head = "| batch | " + " | ".join(
        f"{r}: images/s | {r}: CPU ms/image | {r}: decoding beside inference (1 / 2 threads), images/s | "
        f"{r}: inference only, images/s" for r in runtimes) + " |"
    lines = [head, "|" + "---|" * (1 + 4 * len(runtimes))]
    sizes = [row["batch_size"] for row in ceiling[runtimes[0]]["rows"]]
    for index, size in enumerate(sizes):
        cells = []
        for runtime in runtimes:
            row = ceiling[runtime]["rows"][index]
            pools = row.get("decode_pool", {})
            cells += [fmt_spread(row["images_per_s"], 1), f"{row['cpu_ms_per_image']['median']:.1f}",
                      " / ".join(f"{pool['images_per_s']['median']:.1f}" for pool in pools.values()) or "–",
                      fmt_spread(row["inference_only_images_per_s"])]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    for runtime in runtimes:
        lines.append("")
        one, decode = ceiling[runtime]["batch1_latency_ms"], ceiling[runtime]["decode_ms"]
        best = best_ceiling(ceiling[runtime])
        lines.append(f"{runtime}: batch-1 latency with decoding {fmt_spread(one, 1)} ms; "
                     f"decoding alone {fmt_spread(decode, 1)} ms per image; the ceiling: {best.images_per_s:.1f} "
                     f"images/s at {best.cpu_ms_per_image:.1f} CPU ms per image ({best.describe()}).")
    return lines


def e2e_table(results: dict[str, Any]) -> list[str]:
    lines = ["| runtime | saturated images/s (range over rounds) | × ceiling, paired rounds | mean batch | "
             "CPU ms per image | 1 client p50/p95/p99 ms | overhead p50 ms (range) | "
             "at 50% load (rate) p50/p95/p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for runtime, e2e in results["e2e"].items():
        saturated, ratio, overhead = e2e["saturation"], e2e["ratio"], e2e["light_overhead_ms"]
        half = e2e["half"]
        lines.append(
            f"| {runtime} | {saturated['images_per_s']:.1f} ({_range(saturated['images_per_s_bins'])}) | "
            f"{fmt_spread(ratio, 2)} ({ceiling_of(e2e).describe()}) | "
            f"{e2e['batches'].get('mean_batch_size', 0):.1f} | {_cpu(e2e['cpu_ms_per_image'])} | "
            f"{_lat(e2e['light']['latency_ms'])} | {fmt_spread(overhead, 1)} | "
            f"({half['rate_per_s']:.1f}/s) {_lat(half['latency_ms'])} |"
        )
    lines += ["", "Rounds (the ceiling at its best arrangement, then the pipeline saturated, back to back):", "",
              "| runtime | round | ceiling images/s | pipeline images/s | ratio | pipeline decoding in the worker |",
              "|---|---|---|---|---|---|"]
    for runtime, e2e in results["e2e"].items():
        for index, row in enumerate(e2e["rounds"], 1):
            other = row.get("worker_preprocessing_images_per_s")
            lines.append(f"| {runtime} | {index} | {row['ceiling_images_per_s']:.1f} | {row['images_per_s']:.1f} | "
                         f"{row['ratio']:.2f} | {'–' if other is None else f'{other:.1f}'} |")
    return lines


def placement_lines(results: dict[str, Any]) -> list[str]:
    gateway = results.get("e2e", {}).get("onnxruntime")
    if not gateway or "worker_preprocessing" not in gateway:
        return []
    worker = gateway["worker_preprocessing"]
    return [
        "| onnxruntime, decoding in | saturated images/s (range over rounds) | CPU ms per image | mean batch |",
        "|---|---|---|---|",
        f"| gateway (shipped) | {gateway['saturation']['images_per_s']:.1f} "
        f"({_range(gateway['saturation']['images_per_s_bins'])}) | {_cpu(gateway['cpu_ms_per_image'])} | "
        f"{gateway['batches'].get('mean_batch_size', 0):.1f} |",
        f"| worker | {worker['saturation']['images_per_s']:.1f} "
        f"({_range(worker['saturation']['images_per_s_bins'])}) | "
        f"{_cpu(worker['cpu_ms_per_image'])} | {worker['batches'].get('mean_batch_size', 0):.1f} |",
    ]


def naive_lines(results: dict[str, Any]) -> list[str]:
    naive = results["naive"]["saturation"]
    lines = [f"Naive design (sync endpoint, Keras `model.predict` per request, {results['naive']['clients']} clients): "
             f"{naive['images_per_s']:.1f} images/s, p50/p95/p99 {_lat(naive['latency_ms'])} ms, "
             f"{naive['errors']} errors."]
    for runtime, e2e in results.get("e2e", {}).items():
        lines.append(f"Pipeline ({runtime}) / naive: {e2e['saturation']['images_per_s'] / naive['images_per_s']:.1f}×.")
    return lines


def fanout_table(results: dict[str, Any]) -> list[str]:
    lines = ["| subscribers | on jobs (finished at) | delivered | delivery p50 / p95 / p99 / max ms (median run) | "
             "p99 over runs | gateway RSS MB idle → connected (peak) | KB per subscriber | "
             "cores busy: gateway, subscribers |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results["fanout"]:
        rss, busy, ms = row["gateway_rss_mb"], row["cores_busy"], row["delivery_ms"]
        lines.append(
            f"| {row['subscribers']} | {row['jobs']}, {row['subscribers'] // row['jobs']} each "
            f"({row['finish_rate_per_s']:.0f}/s) | {row['delivered']} | "
            f"{ms['p50']:.0f} / {ms['p95']:.0f} / {ms['p99']:.0f} / {row['max_delivery_ms']:.0f} | "
            f"{fmt_spread(row['p99_ms_over_runs'])} | "
            f"{rss['idle']:.0f} → {rss['connected']:.0f} ({rss['peak']:.0f}) | "
            f"{(rss['connected'] - rss['idle']) * 1024 / row['subscribers']:.0f} | "
            f"{busy['gateway']:.2f}, {busy['subscribers']:.2f} |")
    return lines


def submit_lines(results: dict[str, Any]) -> list[str]:
    submit = results["submit"]
    lines = [f"Submit rate, no worker ({submit['clients']} clients, mixed images, validated and preprocessed): "
             f"{submit['images_per_s']:.1f} jobs/s ({_range(submit['images_per_s_bins'])}), "
             f"POST p50/p95/p99 {_lat(submit['latency_ms'])} ms, CPU ms per job {_cpu(submit['cpu_ms_per_job'])}."]
    if "submit_small" in results:
        small = results["submit_small"]
        lines.append(f"One 224×224 JPEG (decoding and preprocessing it: {small['preprocess_cpu_ms']:.2f} CPU ms): "
                     f"{small['images_per_s']:.1f} jobs/s, CPU ms per job {_cpu(small['cpu_ms_per_job'])}; the "
                     f"gateway outside decoding {admission_cpu_ms(results):.2f} ms.")
    if "submit_small_batches" in results:
        batches = results["submit_small_batches"]
        batch_admission = admission_cpu_ms(results, "submit_small_batches")
        lines.append(f"The same JPEG POSTed to /v1/batches {batches['jobs_per_request']} at a time (multipart): "
                     f"{batches['images_per_s']:.1f} jobs/s ({_range(batches['images_per_s_bins'])}), "
                     f"POST p50/p95/p99 {_lat(batches['latency_ms'])} ms per batch, CPU ms per job "
                     f"{_cpu(batches['cpu_ms_per_job'])}; the gateway outside decoding {batch_admission:.2f} ms, "
                     f"{batch_admission / admission_cpu_ms(results):.2f}× one job at a time.")
    return lines


def gateway_process_table(results: dict[str, Any]) -> list[str]:
    measured = results["gateway_processes"]
    lines = [f"No worker, {measured['clients']} clients, mixed images (each validated, decoded and preprocessed), "
             f"median (range) of {measured['rows'][0]['jobs_per_s']['n']} alternating rounds.", "",
             "| gateway processes | jobs/s | × one process (per round) | POST p99 ms | gateway CPU ms per job |",
             "| --- | --- | --- | --- | --- |"]
    for row in measured["rows"]:
        lines.append(f"| {row['gateway_processes']} | {fmt_spread(row['jobs_per_s'], 1)} | "
                     f"{fmt_spread(row['over_first'], 2)} | {fmt_spread(row['p99_ms'], 0)} | "
                     f"{fmt_spread(row['cpu_ms_per_job'], 1)} |")
    return lines


def admission_cpu_ms(results: dict[str, Any], section: str = "submit_small") -> float:
    """The gateway's CPU per accepted job besides decoding and preprocessing the upload."""
    return float(results[section]["cpu_ms_per_job"]["gateway"] - results["submit_small"]["preprocess_cpu_ms"])


def worker_io_lines(results: dict[str, Any]) -> list[str]:
    io = results["worker_io"]
    per_image = io["cpu_ms_per_image"]
    return [f"The worker's CPU ms per image outside the forward pass (process_batch on SQLite and Redis, a model "
            f"that answers at once, {io['images_per_round']} images a round, median (range) of "
            f"{per_image['16']['n']} alternating rounds): batch 16 {fmt_spread(per_image['16'], 2)}, "
            f"batch 1 {fmt_spread(per_image['1'], 2)}, batch 1 / batch 16 {fmt_spread(io['batch1_over_batch16'], 1)}×."]


def worker_count_table(results: dict[str, Any]) -> list[str]:
    lines = ["| workers | intra-op threads each | images/s, saturated (range of 2 s bins) | p50 / p95 / p99 ms |",
             "| --- | --- | --- | --- |"]
    for row in results["worker_counts"]:
        lines.append(f"| {row['workers']} | {row['threads_per_worker']} | {row['images_per_s']:.1f} "
                     f"({_range(row['images_per_s_bins'])}) | {_lat(row['latency_ms'])} |")
    return lines


def step_table(results: dict[str, Any]) -> list[str]:
    step = results["step"]
    phases = ", ".join(f"{seconds:g} s at {rate:g}/s" for seconds, rate in step["phases"])
    lines = [f"Phases: {phases}; autoscaler windows {step['scaling_env']}.", "",
             "| | jobs (succeeded) | p50 / p95 / p99 ms | worker-seconds | most workers | "
             "predicted − measured queue wait, median / p90 s |", "| --- | --- | --- | --- | --- | --- |"]
    for name in ("fixed", "autoscaled"):
        row = step[name]
        error = row["predicted_wait_error_s"]
        lines.append(f"| {name} | {row['jobs']} ({row['succeeded']}) | {_lat(row['latency_ms'])} | "
                     f"{row['worker_seconds']:.0f} | {row['max_live_workers']} | "
                     f"{error['median']:.2f} / {error['p90']:.2f} (n={error['n']}) |")
    lines += ["", f"Cold start (the burst's first job on a pool at zero, submit to result): "
                  f"{step['autoscaled']['cold_start_s']:.1f} s."]
    return lines


def target_lines(results: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = []
    for runtime, e2e in results.get("e2e", {}).items():
        rate = e2e["saturation"]["images_per_s"]
        ratio = paired_median(results, runtime, "ratio")
        if ratio is not None:
            lines.append(f"- {runtime}: saturated / ceiling = {ratio:.2f} (target ≥ {TARGET_CEILING_RATIO}): "
                         f"{mark(ratio >= TARGET_CEILING_RATIO)}")
        if "ceiling_cpu_ms_per_image" in e2e:
            cpu_ratio = pipeline_cpu_over_ceiling(e2e)
            lines.append(f"- {runtime}: CPU per image, pipeline (gateway + worker + Redis) / ceiling = {cpu_ratio:.2f} "
                         f"(target ≤ {TARGET_CPU_RATIO}): {mark(cpu_ratio <= TARGET_CPU_RATIO)}")
        if "naive" in results:
            times = rate / results["naive"]["saturation"]["images_per_s"]
            lines.append(f"- {runtime}: saturated / naive = {times:.1f}× (target ≥ {TARGET_NAIVE_RATIO:.0f}×): "
                         f"{mark(times >= TARGET_NAIVE_RATIO)}")
        overhead = paired_median(results, runtime, "light_overhead_ms")
        if overhead is not None:
            lines.append(f"- {runtime}: light-load overhead p50 = {overhead:.1f} ms "
                         f"(target ≤ {TARGET_OVERHEAD_MS:.0f} ms): {mark(overhead <= TARGET_OVERHEAD_MS)}")
    if "submit_small" in results:
        admission = admission_cpu_ms(results)
        lines.append(f"- gateway CPU per accepted job outside decoding = {admission:.2f} ms "
                     f"(target ≤ {TARGET_ADMISSION_CPU_MS:.0f} ms): {mark(admission <= TARGET_ADMISSION_CPU_MS)}")
    if "worker_io" in results:
        at_16 = results["worker_io"]["cpu_ms_per_image"]["16"]["median"]
        lines.append(f"- worker CPU per image outside the forward pass at batch 16 = {at_16:.2f} ms "
                     f"(target ≤ {TARGET_WORKER_CPU_MS:.0f} ms): {mark(at_16 <= TARGET_WORKER_CPU_MS)}")
    for row in results.get("fanout", []):
        if row["subscribers"] == TARGET_FANOUT_SUBSCRIBERS:
            p99 = row["p99_ms_over_runs"]["median"]
            lines.append(f"- {row['subscribers']} SSE subscribers ({row['subscribers'] // row['jobs']} per job): "
                         f"p99 = {p99:.0f} ms, median of {row['p99_ms_over_runs']['n']} runs "
                         f"(target ≤ {TARGET_FANOUT_P99_MS:.0f} ms): {mark(p99 <= TARGET_FANOUT_P99_MS)}")
    return lines


def profile_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, summary in results.get("profiles", {}).items():
        top = ", ".join(f"{function} {share}%" for function, share in summary["self"][:6])
        lines.append(f"- `{name}` (self): {top}")
    return lines


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [f"# asyncinfer benchmark {results['started']}{' (quick)' if results.get('quick') else ''}", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, load average at "
           f"start {', '.join(f'{v:.1f}' for v in m['load_average_at_start'])}. Images: {results['images']}. "
           f"Run took {results.get('duration_s', 0):.0f} s.", ""]
    sections = [
        ("Ceiling: one process decodes, preprocesses, runs batched inference (median (min–max) of rounds)",
         "ceiling", ceiling_table),
        ("End to end: gateway + Redis + SQLite + one worker, clients submit over HTTP and wait for the SSE result",
         "e2e", e2e_table),
        ("Where decoding happens", "e2e", placement_lines),
        ("The naive design", "naive", naive_lines),
        ("SSE fan-out on one gateway process", "fanout", fanout_table),
        ("Submit rate", "submit", submit_lines),
        ("Gateway processes on one port", "gateway_processes", gateway_process_table),
        ("Workers on one host (keras; the autoscaler splits the cores between them)", "worker_counts",
         worker_count_table),
        ("A step of load: one fixed worker versus the local autoscaler", "step", step_table),
        ("The worker's own cost per image", "worker_io", worker_io_lines),
    ]
    for title, key, renderer in sections:
        lines = renderer(results) if key in results else []
        if lines:
            out += [f"## {title}", "", *lines, ""]
    out += ["## Targets", "", *target_lines(results), ""]
    if results.get("profiles"):
        out += ["## Profiles (py-spy, share of samples)", "", *profile_lines(results), ""]
    return "\n".join(out)

"""The benchmark's results as Markdown: the tables the README quotes, and the targets."""

from __future__ import annotations

from typing import Any

from bench.stats import fmt_spread

TARGET_CEILING_RATIO = 0.90
TARGET_NAIVE_RATIO = 6.0
TARGET_OVERHEAD_MS = 15.0
TARGET_FANOUT_P99_MS = 250.0
TARGET_FANOUT_SUBSCRIBERS = 5000


def best_ceiling(ceiling: dict[str, Any]) -> tuple[float, int]:
    """The highest median images/s over batch sizes, and that batch size."""
    row = max(ceiling["rows"], key=lambda r: r["images_per_s"]["median"])
    return row["images_per_s"]["median"], row["batch_size"]


def light_overhead_ms(results: dict[str, Any], runtime: str) -> float | None:
    e2e, ceiling = results.get("e2e", {}).get(runtime), results.get("ceiling", {}).get(runtime)
    if not e2e or not ceiling or "light" not in e2e:
        return None
    return float(e2e["light"]["latency_ms"]["p50"] - ceiling["batch1_latency_ms"]["median"])


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
        f"{r}: images/s | {r}: CPU ms/image | {r}: inference only, images/s" for r in runtimes) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(runtimes))]
    sizes = [row["batch_size"] for row in ceiling[runtimes[0]]["rows"]]
    for index, size in enumerate(sizes):
        cells = []
        for runtime in runtimes:
            row = ceiling[runtime]["rows"][index]
            cells += [fmt_spread(row["images_per_s"], 1), f"{row['cpu_ms_per_image']['median']:.1f}",
                      fmt_spread(row["inference_only_images_per_s"])]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    for runtime in runtimes:
        lines.append("")
        one, decode = ceiling[runtime]["batch1_latency_ms"], ceiling[runtime]["decode_ms"]
        lines.append(f"{runtime}: batch-1 latency with decoding {fmt_spread(one, 1)} ms; "
                     f"decoding alone {fmt_spread(decode, 1)} ms per image.")
    return lines


def e2e_table(results: dict[str, Any]) -> list[str]:
    lines = ["| runtime | saturated images/s (range of 2 s bins) | × its ceiling | mean batch | CPU ms per image | "
             "1 client p50/p95/p99 ms | overhead p50 ms | at 50% load (rate) p50/p95/p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for runtime, e2e in results["e2e"].items():
        saturated = e2e["saturation"]
        ratio = "–"
        if runtime in results.get("ceiling", {}):
            best, size = best_ceiling(results["ceiling"][runtime])
            ratio = f"{saturated['images_per_s'] / best:.2f} (of {best:.1f} at batch {size})"
        overhead = light_overhead_ms(results, runtime)
        half = e2e.get("half")
        half_text = f"({half['rate_per_s']:.1f}/s) {_lat(half['latency_ms'])}" if half else "–"
        lines.append(
            f"| {runtime} | {saturated['images_per_s']:.1f} ({_range(saturated['images_per_s_bins'])}) | {ratio} | "
            f"{e2e['batches'].get('mean_batch_size', 0):.1f} | {_cpu(e2e['cpu_ms_per_image'])} | "
            f"{_lat(e2e['light']['latency_ms']) if 'light' in e2e else '–'} | "
            f"{'–' if overhead is None else f'{overhead:.1f}'} | "
            f"{half_text} |"
        )
    return lines


def placement_lines(results: dict[str, Any]) -> list[str]:
    worker = results.get("e2e_worker_preprocessing")
    gateway = results.get("e2e", {}).get("onnxruntime")
    if not worker or not gateway:
        return []
    return [
        "| onnxruntime, decoding in | saturated images/s | CPU ms per image |", "|---|---|---|",
        f"| gateway (shipped) | {gateway['saturation']['images_per_s']:.1f} | {_cpu(gateway['cpu_ms_per_image'])} |",
        f"| worker | {worker['saturation']['images_per_s']:.1f} | {_cpu(worker['cpu_ms_per_image'])} |",
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
    lines = ["| subscribers | on jobs (finished at) | delivered | delivery p50 / p95 / p99 / max ms | "
             "gateway RSS MB idle → connected (peak) | cores busy: gateway, subscribers |",
             "|---|---|---|---|---|---|"]
    for row in results["fanout"]:
        rss, busy, ms = row["gateway_rss_mb"], row["cores_busy"], row["delivery_ms"]
        lines.append(
            f"| {row['subscribers']} | {row['jobs']}, {row['subscribers'] // row['jobs']} each "
            f"({row['finish_rate_per_s']:.0f}/s) | {row['delivered']} | "
            f"{ms['p50']:.0f} / {ms['p95']:.0f} / {ms['p99']:.0f} / {row['max_delivery_ms']:.0f} | "
            f"{rss['idle']:.0f} → {rss['connected']:.0f} ({rss['peak']:.0f}) | "
            f"{busy['gateway']:.2f}, {busy['subscribers']:.2f} |")
    return lines


def submit_lines(results: dict[str, Any]) -> list[str]:
    submit = results["submit"]
    return [f"Submit rate, no worker ({submit['clients']} clients, mixed images, validated and preprocessed): "
            f"{submit['images_per_s']:.1f} jobs/s ({_range(submit['images_per_s_bins'])}), "
            f"POST p50/p95/p99 {_lat(submit['latency_ms'])} ms, CPU ms per job {_cpu(submit['cpu_ms_per_job'])}."]


def target_lines(results: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = []
    for runtime, e2e in results.get("e2e", {}).items():
        rate = e2e["saturation"]["images_per_s"]
        if runtime in results.get("ceiling", {}):
            ratio = rate / best_ceiling(results["ceiling"][runtime])[0]
            lines.append(f"- {runtime}: saturated / ceiling = {ratio:.2f} (target ≥ {TARGET_CEILING_RATIO}): "
                         f"{mark(ratio >= TARGET_CEILING_RATIO)}")
        if "naive" in results:
            ratio = rate / results["naive"]["saturation"]["images_per_s"]
            lines.append(f"- {runtime}: saturated / naive = {ratio:.1f}× (target ≥ {TARGET_NAIVE_RATIO:.0f}×): "
                         f"{mark(ratio >= TARGET_NAIVE_RATIO)}")
        overhead = light_overhead_ms(results, runtime)
        if overhead is not None:
            lines.append(f"- {runtime}: light-load overhead p50 = {overhead:.1f} ms "
                         f"(target ≤ {TARGET_OVERHEAD_MS:.0f} ms): {mark(overhead <= TARGET_OVERHEAD_MS)}")
    for row in results.get("fanout", []):
        if row["subscribers"] == TARGET_FANOUT_SUBSCRIBERS:
            p99 = row["delivery_ms"]["p99"]
            lines.append(f"- {row['subscribers']} SSE subscribers ({row['subscribers'] // row['jobs']} per job): "
                         f"p99 = {p99:.0f} ms "
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
        ("Where decoding happens", "e2e_worker_preprocessing", placement_lines),
        ("The naive design", "naive", naive_lines),
        ("SSE fan-out on one gateway process", "fanout", fanout_table),
        ("Submit rate", "submit", submit_lines),
    ]
    for title, key, renderer in sections:
        if key in results:
            out += [f"## {title}", "", *renderer(results), ""]
    out += ["## Targets", "", *target_lines(results), ""]
    if results.get("profiles"):
        out += ["## Profiles (py-spy, share of samples)", "", *profile_lines(results), ""]
    return "\n".join(out)

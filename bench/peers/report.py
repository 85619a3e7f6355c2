"""The Markdown of a `python -m bench.peers` run."""

from __future__ import annotations

from typing import Any

from bench.stats import fmt_spread


def _table(results: dict[str, Any], clients: str) -> list[str]:
    rows = {system: data["by_clients"][clients] for system, data in results["systems"].items()
            if clients in data["by_clients"]}
    if not rows:
        return []
    fastest = max(row["images_per_s"] for row in rows.values())
    leanest = min(row["cpu"]["server_ms_per_image"] for row in rows.values()) or float("nan")
    lines = [
        f"### {clients} closed-loop clients", "",
        "| system | images/s (rounds) | vs fastest | p50 ms | p95 ms | p99 ms | errors | server CPU ms/image "
        "| vs leanest | client CPU ms/image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, row in sorted(rows.items(), key=lambda item: -item[1]["images_per_s"]):
        latency, cpu = row["latency_ms"], row["cpu"]
        lines.append(
            f"| {system} | {fmt_spread(row['images_per_s_bins'], 1)} | {row['images_per_s'] / fastest:.2f} "
            f"| {latency['p50']:.0f} | {latency['p95']:.0f} | {latency['p99']:.0f} | {row['errors']} "
            f"| {cpu['server_ms_per_image']:.1f} | {cpu['server_ms_per_image'] / leanest:.2f} "
            f"| {cpu['client_ms_per_image']:.1f} |")
    lines.append("")
    for system, row in rows.items():
        heaviest = ", ".join(f"{name} {ms:.1f}" for name, ms in row["cpu"]["by_process_ms_per_image"].items())
        lines.append(f"- {system}, CPU ms per image by process: {heaviest}")
        if row["first_errors"]:
            lines.append(f"  - first errors: {'; '.join(row['first_errors'])}")
    lines.append("")
    return lines


# Issue 17's bars: against the fastest synchronous peer, and against each asynchronous one, on the same load.
TARGET_OVER_FASTEST_PEER = 1.15
TARGET_OVER_ASYNC_PEERS = 4.0
SYNC_PEERS = ("ray-sync", "bentoml-sync")
ASYNC_PEERS = ("ray-async", "bentoml-task")


def target_lines(results: dict[str, Any]) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = []
    for clients in map(str, results["plan"]["clients"]):
        rows = {system: data["by_clients"][clients] for system, data in results["systems"].items()
                if clients in data["by_clients"]}
        ours = rows.get("asyncinfer")
        sync = [system for system in SYNC_PEERS if system in rows]
        if ours is None or not sync:
            continue
        peer = max(sync, key=lambda system: rows[system]["images_per_s"])
        times = ours["images_per_s"] / rows[peer]["images_per_s"]
        ours_p95, peer_p95 = ours["latency_ms"]["p95"], rows[peer]["latency_ms"]["p95"]
        lines.append(f"- {clients} clients: asyncinfer / the fastest peer ({peer}) = {times:.2f}× "
                     f"(target ≥ {TARGET_OVER_FASTEST_PEER}×), p95 {ours_p95:.0f} ms against {peer_p95:.0f} ms "
                     f"(target: equal or lower): {mark(times >= TARGET_OVER_FASTEST_PEER and ours_p95 <= peer_p95)}")
        for system in (system for system in ASYNC_PEERS if system in rows):
            times = ours["images_per_s"] / rows[system]["images_per_s"]
            lines.append(f"- {clients} clients: asyncinfer / {system} = {times:.1f}× "
                         f"(target ≥ {TARGET_OVER_ASYNC_PEERS:.0f}×): {mark(times >= TARGET_OVER_ASYNC_PEERS)}")
    return lines


def render(results: dict[str, Any]) -> str:
    plan = results["plan"]
    lines = [
        f"# asyncinfer beside Ray Serve and BentoML, run {results['run_id']}{' (quick)' if results['quick'] else ''}",
        "",
        f"Model {results['model']['model']} with random weights as ONNX ({results['model']['onnx']}), batches up to "
        f"{results['model']['max_batch_size']}, {results['model']['batch_wait_ms']} ms batch wait where the system "
        f"has one; {results['images']}; {plan['rounds']} rounds of {plan['round_s']:.0f} s per system and "
        f"concurrency after {plan['warmup_s']:.1f} s of warm-up, one system running at a time; "
        f"{results['cores']} cores, load average {results['load_average_at_start'][0]:.1f} at the start; polling "
        f"clients ask every {results['poll_ms']:.0f} ms. Latency: from sending the upload to the answer (sync), the "
        "terminal SSE event (asyncinfer) or the poll that saw the result (and, for BentoML, its fetch).",
        "",
        "| system | what it is |",
        "|---|---|",
        *(f"| {system} | {design} |" for system, design in results["designs"].items()),
        "",
    ]
    for clients in map(str, plan["clients"]):
        lines += _table(results, clients)
    lines += ["### Parity with onnxruntime called directly on the same pixels", "",
              "| system | top class equal, top-5 scores within tolerance | largest score difference |", "|---|---|---|"]
    for system, data in results["systems"].items():
        parity = data.get("parity")
        if parity:
            worst = max(row["max_abs_difference"] for row in parity["images"])
            lines.append(f"| {system} | {'yes' if parity['ok'] else 'NO'} ({len(parity['images'])} images, "
                         f"tolerance {parity['tolerance']:g}) | {worst:.1e} |")
    lines.append("")
    targets = target_lines(results)
    if targets:
        lines += ["### Targets", "", *targets, ""]
    if results["skipped"]:
        lines += ["### Skipped", "", *(f"- {system}: {why}" for system, why in results["skipped"].items()), ""]
    if "bentoml_task_store_mb" in results:
        lines.append(f"BentoML's task store (SQLite, every task's upload and result) grew to "
                     f"{results['bentoml_task_store_mb']:.0f} MB; deleted after the run.\n")
    lines.append(f"Venvs: {', '.join(f'{name} {where}' for name, where in results['venvs'].items())}. "
                 f"Run took {results['duration_s']:.0f} s.")
    return "\n".join(lines) + "\n"

"""Optional py-spy profiles of the gateway and workers under load (`python -m bench --profile`):
raw collapsed stacks next to the results, and a short summary of where the samples fell."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_FRAME = re.compile(r"(.*) \((.*?):\d+\)")


class Profiler:
    """Samples processes with py-spy while a phase of the benchmark runs."""

    def __init__(self, out_dir: Path | None, rate_hz: int = 100) -> None:
        self.out_dir = out_dir
        self.rate_hz = rate_hz
        self._running: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def start(self, phase: str, pids: dict[str, int], duration_s: float) -> None:
        if self.out_dir is None:
            return
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            path = self.out_dir / f"{phase}-{name}.txt"
            command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(duration_s)), "--rate",
                       str(self.rate_hz), "--format", "raw", "--nonblocking", "-o", str(path)]
            sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._running.append((path, sampler))

    def finish(self) -> dict[str, dict[str, list[tuple[str, float]]]]:
        """Wait for the samplers; a summary per profile file."""
        summaries = {}
        for path, process in self._running:
            process.wait(120)
            if path.exists():
                summaries[path.stem] = summarise(path)
        self._running.clear()
        return summaries


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    where = match.group(2).split("site-packages/")[-1].split("/work/main/")[-1]
    return f"{match.group(1)} ({where})"


def summarise(path: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Share of samples by innermost function (self) and by any function on the stack."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            anywhere[name] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(name, round(100 * n / total, 1)) for name, n in own.most_common(top)],
        "inclusive": [(name, round(100 * n / total, 1)) for name, n in anywhere.most_common(top * 4)],
    }

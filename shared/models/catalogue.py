"""The models this installation serves: the `asyncinfer.models` entry points (read once, at start)
and the manifests of ASYNCINFER_MODEL_DIRS (read again whenever a directory changes, so a model
added there appears without a restart).

An entry point names a `ModelSpec`, a list of them, or a function returning either. A plugin that
fails to load is logged and left out; the others are served."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from shared.errors import ModelUnavailable, UnknownModel
from shared.models.manifest import ManifestInvalid, read_manifest
from shared.models.spec import ModelRef, ModelSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "asyncinfer.models"
# How often a manifest directory is looked at again, at most (a stat of each directory).
RESCAN_INTERVAL_S = 1.0


def version_order(version: str) -> tuple[tuple[int, int | str], ...]:
    """Versions compare part by part, numbers as numbers: 2 < 10, 1-rc < 1-rc2."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[._-]", version))


def _as_specs(loaded: object, origin: str) -> list[ModelSpec]:
    if callable(loaded) and not isinstance(loaded, ModelSpec):
        loaded = loaded()
    specs = [loaded] if isinstance(loaded, ModelSpec) else list(loaded) if isinstance(loaded, Iterable) else []
    if not specs or not all(isinstance(spec, ModelSpec) for spec in specs):
        raise TypeError(f"{origin} is not a ModelSpec (nor a list of them, nor a function returning one)")
    return specs


def plugin_specs() -> tuple[list[ModelSpec], dict[str, str]]:
    """Every spec the installed packages declare, and the problems of those that failed."""
    specs: list[ModelSpec] = []
    problems: dict[str, str] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {point.name} = {point.value}"
        try:
            found = _as_specs(point.load(), origin)
        except Exception as e:  # a team's broken package must not take the others down
            log.error("model plugin %s failed to load: %s: %s", origin, type(e).__name__, e)
            problems[origin] = f"{type(e).__name__}: {e}"
            continue
        specs.extend(replace(spec, source=origin) for spec in found)
    return specs, problems


def manifest_specs(directories: Sequence[Path]) -> tuple[list[ModelSpec], dict[str, str]]:
    specs: list[ModelSpec] = []
    problems: dict[str, str] = {}
    for directory in directories:
        for path in sorted(directory.glob("*.toml")) + sorted(directory.glob("*/*.toml")):
            try:
                specs.append(read_manifest(path))
            except ManifestInvalid as e:
                log.error("model manifest %s", e)
                problems[str(path)] = str(e)
    return specs, problems


class Catalogue:
    """Every model and version, by name; `resolve` turns a client's `model` into one spec."""

    def __init__(self, plugins: Sequence[ModelSpec], *, default_model: str, manifest_dirs: Sequence[Path] = (),
                 plugin_problems: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.default_model = default_model
        self.manifest_dirs = [Path(d).expanduser() for d in manifest_dirs]
        self._plugins = list(plugins)
        self._plugin_problems = dict(plugin_problems or {})
        self._clock = clock
        self._lock = threading.Lock()
        self._scanned_at = -RESCAN_INTERVAL_S
        self._dir_stamps: tuple[tuple[str, float], ...] | None = None
        self._models: dict[str, dict[str, ModelSpec]] = {}
        self.problems: dict[str, str] = {}
        self._refresh()

    @classmethod
    def discover(cls, *, default_model: str, manifest_dirs: Sequence[Path | str] = ()) -> Catalogue:
        specs, problems = plugin_specs()
        return cls(specs, default_model=default_model, manifest_dirs=[Path(d) for d in manifest_dirs],
                   plugin_problems=problems)

    def _stamps(self) -> tuple[tuple[str, float], ...]:
        stamps = []
        for directory in self.manifest_dirs:
            for path in [directory, *directory.glob("*.toml"), *directory.glob("*/*.toml"), *directory.glob("*/")]:
                try:
                    stamps.append((str(path), path.stat().st_mtime))
                except OSError:
                    stamps.append((str(path), -1.0))
        return tuple(sorted(stamps))

    def _refresh(self) -> None:
        with self._lock:
            now = self._clock()
            if self._dir_stamps is not None and now - self._scanned_at < RESCAN_INTERVAL_S:
                return
            self._scanned_at = now
            stamps = self._stamps()
            if stamps == self._dir_stamps:
                return
            self._dir_stamps = stamps
            from_manifests, problems = manifest_specs(self.manifest_dirs)
            models: dict[str, dict[str, ModelSpec]] = {}
            for spec in [*self._plugins, *from_manifests]:
                versions = models.setdefault(spec.name, {})
                if spec.version in versions:
                    problems[spec.source] = f"{spec.ref} is declared twice (also by {versions[spec.version].source})"
                    log.error("model %s is declared twice: %s and %s; the first is served", spec.ref,
                              versions[spec.version].source, spec.source)
                    continue
                versions[spec.version] = spec
            # Sorted once per change, not on every call (each submit asks).
            self._models = {name: dict(sorted(versions.items(), key=lambda item: version_order(item[0])))
                            for name, versions in sorted(models.items())}
            self.problems = {**self._plugin_problems, **problems}

    def models(self) -> dict[str, dict[str, ModelSpec]]:
        """name → version → spec, names sorted, versions oldest first."""
        self._refresh()
        return self._models  # replaced whole on a change, never altered: safe to hand out

    def queues(self) -> dict[str, tuple[str, ...]]:
        """`name@version` → its queues (lanes), for every model version."""
        return {spec.ref: spec.queues for versions in self.models().values() for spec in versions.values()}

    def versions(self, name: str) -> dict[str, ModelSpec]:
        versions = self.models().get(name)
        if not versions:
            known = ", ".join(self.models()) or "none"
            raise UnknownModel(f"no model is named {name!r}; this gateway serves: {known}")
        return versions

    def latest_version(self, name: str) -> str:
        return list(self.versions(name))[-1]

    def get(self, name: str, version: str) -> ModelSpec:
        versions = self.versions(name)
        if version not in versions:
            raise UnknownModel(f"model {name} has no version {version!r}; it has: {', '.join(versions)}")
        return versions[version]

    def resolve(self, text: str | None, choose_version: Callable[[str], str] | None = None) -> ModelSpec:
        """The spec a client's `model` names: `name@version` exactly, a bare `name` at the version
        `choose_version(name)` picks (the traffic split), by default its latest; none: the default model."""
        ref = ModelRef.parse(text) if text else ModelRef.parse(self.default_model)
        if ref.version is not None:
            return self.get(ref.name, ref.version)
        self.versions(ref.name)  # UnknownModel before a split is consulted
        version = choose_version(ref.name) if choose_version is not None else self.latest_version(ref.name)
        return self.get(ref.name, version)


    def worker_model(self, model: str) -> ModelSpec:
        """The spec of the one model a worker serves (`model`, else the default model)."""
        try:
            return self.resolve(model or None)
        except UnknownModel as e:
            problems = "".join(f"; {source} failed: {problem}" for source, problem in self.problems.items())
            raise ModelUnavailable(f"ASYNCINFER_MODEL={model or self.default_model}: {e.detail}{problems}") from None

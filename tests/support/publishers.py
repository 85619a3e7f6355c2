"""Where a unit test runs the lifecycle without Redis: what it would have published, kept in a list."""

from __future__ import annotations

from shared.jobs import JobDoc


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[JobDoc] = []

    def publish(self, doc: JobDoc) -> None:
        self.published.append(doc)

    def publish_many(self, docs: list[JobDoc]) -> None:
        self.published.extend(docs)

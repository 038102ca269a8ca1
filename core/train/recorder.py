"""Where a Trainer's numbers go. `core.store.RunWriter` writes them to SQLite;
`MemoryRecorder` keeps them in lists (benchmarks, notebooks, tests of pure training).
Both offer the same methods, so the Trainer and probes do not care which they have."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class MemoryRecorder:
    """Keeps every row in memory; attribute names match the store's tables."""

    def __init__(self) -> None:
        self.metric_rows: list[dict] = []
        self.probe_rows: list[dict] = []
        self.histogram_rows: list[dict] = []
        self.event_rows: list[dict] = []
        self.artifact_rows: list[dict] = []
        self.report_rows: list[dict] = []
        self.run_fields: dict[str, Any] = {}

    def metric(self, step: int, epoch: int | None, split: str, key: str, value: float) -> None:
        self.metric_rows.append({"step": step, "epoch": epoch, "split": split, "key": key, "value": float(value)})

    def metrics(self, step: int, epoch: int | None, split: str, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.metric(step, epoch, split, key, value)

    def probe(self, step: int, layer: str, key: str, value: float) -> None:
        self.probe_rows.append({"step": step, "layer": layer, "key": key, "value": float(value)})

    def probes(self, step: int, key: str, values: dict[str, float]) -> None:
        for layer, value in values.items():
            self.probe(step, layer, key, value)

    def histogram(self, step: int, layer: str, kind: str, edges: list[float], counts: list[float]) -> None:
        self.histogram_rows.append({"step": step, "layer": layer, "kind": kind, "edges": edges, "counts": counts})

    def event(self, message: str, level: str = "info") -> None:
        self.event_rows.append({"level": level, "message": message})

    def artifact(self, kind: str, path: str | Path, info: dict | None = None) -> None:
        self.artifact_rows.append({"kind": kind, "path": str(path), "info": info or {}})

    def report(self, step: int, epoch: int | None, split: str, key: str, value: Any) -> None:
        self.report_rows.append({"step": step, "epoch": epoch, "split": split, "key": key, "value": value})

    def progress(self, **fields: Any) -> None:
        self.run_fields.update(fields)

    def flush(self) -> None: ...

    @contextmanager
    def held(self) -> Iterator[None]:
        """Rows wait for an explicit flush inside this block (nothing to wait for here)."""
        yield

    def close(self) -> None: ...

    def series(self, key: str, split: str | None = None) -> list[tuple[int, float]]:
        """(step, value) pairs of one metric."""
        return [(r["step"], r["value"]) for r in self.metric_rows
                if r["key"] == key and (split is None or r["split"] == split)]

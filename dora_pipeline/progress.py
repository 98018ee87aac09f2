"""Progress of the long commands (``demo``, ``run``): per source and per model, with counts
and elapsed time.

On a terminal one status line is redrawn in place and every finished step leaves one
log line above it; anywhere else (CI logs, files, pipes) the same steps are plain log
lines, and partitions are logged at most once every few seconds at INFO (each one at
DEBUG). ``--quiet`` shows neither: the logger is at WARNING and no status line is drawn.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

log = logging.getLogger("dora_pipeline")

PLAIN_PARTITION_INTERVAL = 5.0  # seconds between partition lines at INFO when not on a terminal


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class StatusLine:
    """One line at the bottom of a terminal, redrawn in place (carriage return, erase line)."""

    def __init__(self, stream: IO[str], min_interval: float = 0.1) -> None:
        self.stream = stream
        self.text = ""
        self.min_interval = min_interval
        self._drawn = False
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        self.text = text
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            self.draw()

    def draw(self) -> None:
        if not self.text:
            return
        width = shutil.get_terminal_size((100, 20)).columns - 1
        text = self.text if len(self.text) <= width else self.text[: max(width - 1, 0)] + "…"
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._drawn = False

    def done(self) -> None:
        self.clear()
        self.text = ""


class StatusAwareHandler(logging.StreamHandler):
    """A log handler that prints above the status line instead of through it."""

    def __init__(self, stream: IO[str], status: StatusLine | None = None) -> None:
        super().__init__(stream)
        self.status = status

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is None:
            super().emit(record)
            return
        self.status.clear()
        super().emit(record)
        self.status.draw()


def _bar(done: int, total: int | None, width: int = 20) -> str:
    if not total:
        return ""
    filled = min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "] "


@dataclass
class _SourceProgress:
    name: str
    total: int | None
    started: float
    partitions: int = 0
    rows: int = 0
    quarantined: int = 0
    finished: bool = False


@dataclass
class Progress:
    """Callbacks for ``pipeline.run`` (``on_load``, ``on_model``) that report progress.

    ``partitions`` is the number of partitions planned per source and ``models`` the
    number of models, so the lines can say "37/120"; unknown totals are left out.
    """

    status: StatusLine | None = None
    partitions: Mapping[str, int] = field(default_factory=dict)
    models: int | None = None
    clock: Callable[[], float] = time.monotonic
    _sources: dict[str, _SourceProgress] = field(default_factory=dict)
    _current: _SourceProgress | None = None
    _last_partition_log: float = -1e9
    _models_started: float | None = None
    _models_done: int = 0
    _models_rows: int = 0
    _published: int = 0

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._step_started = self.started

    # -- extract

    def on_load(self, source: Any, day: Any, load: Any) -> None:
        name = source.name
        current = self._current
        if current is None or current.name != name:
            self._finish_source()
            current = self._current = self._sources.setdefault(
                name, _SourceProgress(name, self.partitions.get(name), self._step_started)
            )
        current.partitions += 1
        current.rows += load.total_rows
        current.quarantined += load.quarantined
        now = self.clock()
        of = f"/{current.total}" if current.total else ""
        line = (f"extract {name} {day}: {load.total_rows} rows, {load.quarantined} quarantined "
                f"({current.partitions}{of} partitions, {current.rows} rows so far, {now - current.started:.1f}s)")
        if self.status is not None:
            self.status.show(
                f"extract {name} {_bar(current.partitions, current.total)}{current.partitions}{of} partitions · "
                f"{current.rows:,} rows · {current.quarantined} quarantined · {now - current.started:.1f}s"
            )
            log.debug("%s", line)
        else:
            # Every partition is noise for a long range: at most one line every few seconds at
            # INFO, each one at DEBUG; a partition with quarantined rows is always shown.
            loud = load.quarantined or now - self._last_partition_log >= PLAIN_PARTITION_INTERVAL
            if loud:
                self._last_partition_log = now
            log.log(logging.INFO if loud else logging.DEBUG, "%s", line)
        if current.total and current.partitions >= current.total:
            self._finish_source()

    def _finish_source(self) -> None:
        current = self._current
        if current is None or current.finished:
            return
        current.finished = True
        self._current = None
        now = self.clock()
        self._step_started = now
        if self.status is not None:
            self.status.done()
        log.info("extract %s done: %d partitions, %d rows, %d quarantined in %.1fs",
                 current.name, current.partitions, current.rows, current.quarantined, now - current.started)

    # -- models

    def on_model(self, model: Any, rows: int, seconds: float) -> None:
        if self._models_started is None:
            self._finish_source()
            self._models_started = self._step_started
        self._models_done += 1
        self._models_rows += rows
        published = bool(getattr(model, "published", False))
        self._published += published
        now = self.clock()
        of = f"/{self.models}" if self.models else ""
        if self.status is not None:
            self.status.show(
                f"models {_bar(self._models_done, self.models)}{self._models_done}{of} · {model.qualified} "
                f"{rows:,} rows · {now - self._models_started:.1f}s"
            )
            log.debug("model %d%s %s: %d rows in %.2fs", self._models_done, of, model.qualified, rows, seconds)
        else:
            log.info("model %d%s %s: %d rows in %.2fs", self._models_done, of, model.qualified, rows, seconds)

    def finish(self) -> None:
        """Close the last step (after ``run`` returns, or when it failed)."""
        self._finish_source()
        if self._models_started is not None:
            if self.status is not None:
                self.status.done()
            log.info("models done: %d built (%d marts), %d rows in %.1fs", self._models_done, self._published,
                     self._models_rows, self.clock() - self._models_started)
            self._models_started = None
        elif self.status is not None:
            self.status.done()


def summary_lines(result: Any, report_command: str) -> list[str]:
    """The end-of-run summary: rows per source, quarantined rows, published tables, what next."""
    rows = result.rows_by_source()
    quarantined = result.quarantined_by_source()
    sources = ", ".join(
        f"{name} {count:,} rows" + (f" ({quarantined.get(name, 0):,} quarantined)" if quarantined.get(name) else "")
        for name, count in rows.items()
    ) or "nothing extracted"
    total_quarantined = sum(quarantined.values())
    seconds = result.seconds
    out = [
        # bench/ parses this first line: keep "done: as of" and "in Xs extract + Ys models".
        f"done: as of {result.as_of.isoformat() if result.as_of else 'unknown'} "
        f"in {seconds.get('extract', 0):.1f}s extract + {seconds.get('models', 0):.1f}s models",
        f"  rows per source: {sources}",
        "  quarantined: " + (f"{total_quarantined:,} row{'s' if total_quarantined != 1 else ''}, reasons in dora_raw.quarantine (source, reason, payload)"
                             if total_quarantined else "none"),
        "  published: " + (", ".join(f"dora_metrics.{name} ({count:,})" for name, count in result.published.items())
                           or "nothing"),
        f"  next: {report_command}",
    ]
    return out

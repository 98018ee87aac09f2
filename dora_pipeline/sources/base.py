"""What a source is: a named extractor of typed records for one UTC day.

Each module in ``dora_pipeline/sources/`` that defines ``SOURCE`` (an instance of a
``Source`` subclass) is picked up by ``dora_pipeline.sources.all_sources()``: adding a
source needs no edit anywhere else. The CLI, the Dagster assets and the tests all go
through ``dora_pipeline.pipeline.extract_partition``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from ..config import Settings
from ..records import Quarantined, Record


@dataclass
class ExtractContext:
    """What an extract may use: settings, the warehouse URL (for sources that read
    state the pipeline keeps, such as the webhook inbox), and a logger."""

    settings: Settings
    warehouse_url: str
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("dora_pipeline.sources"))


class Source(ABC):
    #: short name, used as ``source`` in raw tables and as the Dagster asset name
    name: str
    #: raw tables this source writes (Dagster uses it to wire model dependencies)
    writes: tuple[str, ...]
    #: raw tables this source delivers whole on every extract (rows it no longer sends are deleted)
    snapshot_tables: tuple[str, ...] = ()
    #: False for sources whose extract does not depend on the day (the catalog)
    partitioned: bool = True
    #: one line for the Dagster UI
    description: str = ""
    #: incidents are extracted by the day they opened; a source whose incidents are
    #: resolved later sets this so runs re-extract the days that still hold open ones
    revisit_open_incidents: bool = False

    @abstractmethod
    def skip_reason(self, settings: Settings) -> str | None:
        """None when configured; otherwise the one log line that says why it is skipped."""

    @abstractmethod
    def extract(self, day: date, ctx: ExtractContext) -> Iterable[Record | Quarantined]:
        """Every record of this UTC day. Raise ``SourceError`` to fail the partition whole."""


class SourceError(RuntimeError):
    """A source could not deliver a complete partition; nothing of it is loaded."""

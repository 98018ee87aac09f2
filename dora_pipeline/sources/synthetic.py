"""The synthetic organisation as a source (``DORA_SYNTHETIC=true``; ``demo`` turns it on)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import partial

from ..config import Settings
from ..demo.organisation import Organisation, catalog, events_of_day
from ..privacy import pseudonym_key, pseudonymise
from ..records import Quarantined, Record
from .base import ExtractContext, Source


class SyntheticSource(Source):
    name = "synthetic"
    writes = ("deployments", "pull_requests", "incidents", "incident_components", "survey_responses",
              "catalog_entities", "group_memberships", "pull_request_files", "direct_changes")
    snapshot_tables = ("catalog_entities", "group_memberships")
    description = "A deterministic synthetic organisation (demo, tests, benchmarks)."

    def skip_reason(self, settings: Settings) -> str | None:
        return None if settings.synthetic else "DORA_SYNTHETIC is not set (the demo sets it)"

    @staticmethod
    def organisation(settings: Settings) -> Organisation:
        end = date.fromisoformat(settings.synthetic_end) if settings.synthetic_end else datetime.now(UTC).date()
        return Organisation(seed=settings.synthetic_seed, teams=settings.synthetic_teams,
                            services=settings.synthetic_services, end=end, days=settings.synthetic_days)

    def extract(self, day: date, ctx: ExtractContext) -> Iterable[Record | Quarantined]:
        org = self.organisation(ctx.settings)
        yield from catalog(org)
        yield from events_of_day(org, day, partial(pseudonymise, key=pseudonym_key(ctx.settings)))


SOURCE = SyntheticSource()

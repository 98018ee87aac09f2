"""Deployments received by the CI deploy webhook (``dora_pipeline/webhook.py``).

The receiver stores each accepted event in ``dora_raw.webhook_inbox``; this source turns
the rows whose ``finished_at`` falls in the partition's UTC day into deployments
(natural key: the delivery id). A component ref maps to ``service_key_type``
``entity_ref``; a repository alone to ``github_repo``. The source needs no credentials
(it reads the warehouse), so it is always on; without deliveries it loads nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import psycopg

from ..config import Settings
from ..records import Deployment, Quarantined, utc_day_bounds
from .base import ExtractContext, Source, SourceError

SOURCE_NAME = "webhook"


def deployment_from_payload(payload: dict) -> Deployment:
    """The deployment of one stored event (a ``DeployEvent.payload()``)."""
    component = payload.get("component")
    repository = payload.get("repository")
    started = payload.get("started_at")
    return Deployment(
        source=SOURCE_NAME,
        external_id=payload["delivery_id"],
        service_key_type="entity_ref" if component else "github_repo",
        service_key=component or repository,
        repository=repository,
        environment=payload["environment"],
        commit_sha=payload.get("commit_sha"),
        started_at=datetime.fromisoformat(started) if started else None,
        finished_at=datetime.fromisoformat(payload["finished_at"]),
        failed=payload.get("status") != "success",
    )


class WebhookSource(Source):
    """Deploy events from CI pipelines, as stored by the webhook receiver."""

    name = SOURCE_NAME
    writes = ("deployments",)
    description = "Deployments posted by CI pipelines to the deploy webhook (dora-pipeline webhook)"

    def skip_reason(self, settings: Settings) -> str | None:
        # Always on: it reads the warehouse, not a vendor, and the receiver may run with
        # the secret on another host while the pipeline itself does not have it.
        return None

    def extract(self, day: date, ctx: ExtractContext) -> Iterator[Deployment | Quarantined]:
        start, end = utc_day_bounds(day)
        try:
            with psycopg.connect(ctx.warehouse_url) as conn:
                rows = conn.execute(
                    """
                    select delivery_id, payload from dora_raw.webhook_inbox
                    where finished_at >= %s and finished_at < %s
                    order by delivery_id
                    """,
                    (start, end),
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            raise SourceError(
                "webhook: dora_raw.webhook_inbox does not exist; run `dora-pipeline migrate`"
            ) from None
        for delivery_id, payload in rows:
            try:
                yield deployment_from_payload(payload)
            except (KeyError, TypeError, ValueError) as exc:
                yield Quarantined(SOURCE_NAME, "deployments", delivery_id,
                                  f"payload: cannot be read ({type(exc).__name__}: {exc})", payload)


SOURCE = WebhookSource()

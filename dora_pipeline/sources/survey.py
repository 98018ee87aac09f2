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

A bad CSV row is quarantined with its reason (a cell too long, a score out of range); a
file that cannot be read as a whole (not UTF-8, a UTF-16 or second byte-order mark, a
missing column, broken quoting) is quarantined as one record naming the file and the
problem, and the other files of the day load as usual.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
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
from ..text import log_value
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
# csv's default field limit (128 KiB) raises on one long cell and would end the whole
# file; record validation quarantines a long value with its own reason instead.
_FIELD_LIMIT = 64 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
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
            raise SourceError(f"survey: SURVEY_CSV_DIR {log_value(folder)} is not a folder")
        start, end = utc_day_bounds(day)
        records: list[Record | Quarantined] = []
        for path in sorted(folder.glob("*.csv")):
            try:
                rows = read_csv(path)
            except BadExport as exc:
                # One bad export costs its own rows, never the other files of the day.
                records.append(_bad_file(path, str(exc)))
                continue
            times: list[datetime | None] = []
            for _, row in rows:
                try:
                    times.append(parse_time(row.get("submitted_at")))
                except ValueError:
                    times.append(None)
            readable = [t for t in times if t is not None]
            if rows and not readable:
                records.append(
                    _bad_file(path, "has no readable submitted_at; is it a survey export?")
                )
                continue
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


class BadExport(ValueError):
    """A CSV export that cannot be read as a whole; the message says why."""


# Byte-order marks of encodings an export tool may pick instead of UTF-8.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def decode_export(data: bytes) -> str:
    """An export's bytes as text: UTF-8 with at most one byte-order mark (BOM).

    Raises BadExport naming the real problem: another encoding's BOM, a second BOM,
    or the first byte that is not UTF-8 (its offset and line)."""
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise BadExport(
                f"is {encoding} (it starts with a {encoding} byte-order mark); export it as UTF-8"
            )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    if data.startswith(codecs.BOM_UTF8, skip):
        raise BadExport("starts with two UTF-8 byte-order marks (BOM); save it once, as UTF-8")
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise BadExport(
            f"is not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line}); "
            "export it as UTF-8"
        ) from None
    if "\ufeff" in text.partition("\n")[0]:
        raise BadExport(
            "has a stray byte-order mark (BOM, U+FEFF) in its header row; save it as UTF-8"
        )
    return text


def read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of one export with their line numbers; raises BadExport when the file as a
    whole cannot be read (encoding, missing columns, broken CSV)."""
    try:
        text = decode_export(path.read_bytes())
    except OSError as exc:
        raise BadExport(f"cannot be read: {exc.strerror or exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [(h or "").strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise BadExport(f"lacks the column(s) {', '.join(missing)}")
        reader.fieldnames = header
        return [(reader.line_num, {k: v for k, v in row.items() if k}) for row in reader]
    except csv.Error as exc:
        raise BadExport(f"is not valid CSV at line {reader.line_num}: {exc}") from None


def _bad_file(path: Path, problem: str) -> Quarantined:
    """A whole export refused: quarantined in every partition extracted while it is there,
    since the days its rows belong to cannot be read from it."""
    name = log_value(path.name, 200)
    return Quarantined(
        "survey",
        "survey_responses",
        name,
        f"file: {name} {problem}; none of its rows was loaded",
        {"file": name, "problem": problem},
    )


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

"""``dora-pipeline``: demo, run, report, migrate, webhook, db (the contract of DESIGN §5).

Exit codes: 0 success, 2 configuration error, 3 warehouse unreachable (or nothing
published to report on), 4 a source failed, 5 a model failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from .config import ConfigError, Settings
from .models import ModelError, load_models
from .progress import Progress, StatusAwareHandler, StatusLine, is_terminal, summary_lines
from .sources import SourceError, get_source
from .text import VisibleControlsFilter
from .warehouse import (
    Warehouse,
    WarehouseUnavailable,
    as_user,
    first_line,
    redact_url,
    stop_embedded,
)

log = logging.getLogger("dora_pipeline")

EXIT_CONFIG, EXIT_WAREHOUSE, EXIT_SOURCE, EXIT_MODEL = 2, 3, 4, 5


# Secrets shorter than this are not masked in log lines: masking a short value that is
# also a word ("DORA_WEBHOOK_SECRET is too ***") reveals it instead of hiding it.
# Messages never hold secret values in the first place; this filter is the last resort.
REDACT_MIN_LENGTH = 12


class _RedactingFilter(logging.Filter):
    """Last line of defence: configured secrets never reach a log line."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted((s for s in secrets if len(s) >= REDACT_MIN_LENGTH), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _setup_logging(verbosity: int, settings: Settings | None) -> StatusLine | None:
    """Log to stderr; on a terminal (and not --quiet) with a live status line under the log."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    status = StatusLine(sys.stderr) if verbosity >= 0 and is_terminal(sys.stderr) else None
    handler = StatusAwareHandler(sys.stderr, status)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-5s %(message)s", "%H:%M:%S"))
    handler.addFilter(VisibleControlsFilter())  # names from sources never drive the terminal
    if settings is not None:
        handler.addFilter(_RedactingFilter(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("dora_pipeline").setLevel(level)
    return status


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {value!r}") from None


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dora-pipeline", description=__doc__.split("\n")[0])
    verbosity = argparse.ArgumentParser(add_help=False)
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug detail (per model)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[verbosity], help="synthetic organisation end to end")
    demo.add_argument("--teams", type=int, default=6)
    demo.add_argument("--services", type=int, default=24)
    demo.add_argument("--days", type=int, default=120)
    demo.add_argument("--seed", type=int, default=42)

    run = sub.add_parser("run", parents=[verbosity], help="extract, build and publish")
    run.add_argument("--start", type=_date, help="first UTC day to extract (default: --end)")
    run.add_argument("--end", type=_date, help="last UTC day to extract (default: yesterday)")
    run.add_argument("--as-of", type=_timestamp, help="end of every current window (default: the day after --end)")
    run.add_argument("--source", action="append", help="only this source (repeatable); default: every configured one")
    run.add_argument("--full-refresh", action="store_true",
                     help="rebuild every model from all history (default: incremental models rebuild "
                          "only the weeks new data can change)")
    run.add_argument("--accept-catalog-shrink", action="store_true",
                     help="accept a catalog snapshot that shrank by more than DORA_CATALOG_MAX_SHRINK_PCT")

    report = sub.add_parser("report", parents=[verbosity],
                            help="write a self-contained HTML report of the published metrics")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file (default: report.html)")
    report.add_argument("--team", help="only this group and its child groups, e.g. group:default/team-a")
    report.add_argument("--weeks", type=_positive, default=26, help="weeks of history (default: 26)")

    sub.add_parser("migrate", parents=[verbosity], help="create or upgrade the raw schema and the reader role")

    hook = sub.add_parser("webhook", parents=[verbosity], help="the CI deploy receiver")
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=int, default=8088)

    db = sub.add_parser("db", parents=[verbosity], help="the warehouse: print its URL or stop the embedded server")
    db.add_argument("action", choices=["url", "stop"])
    db.add_argument("--reader", action="store_true",
                    help="with url: connect as DORA_READER_ROLE (needs DORA_READER_PASSWORD set at migrate)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    verbosity = -1 if args.quiet else 1 if args.verbose else 0
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        _setup_logging(verbosity, None)
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    args.status = _setup_logging(verbosity, settings)
    if getattr(args, "accept_catalog_shrink", False):
        settings = replace(settings, accept_catalog_shrink=True)
    try:
        return _dispatch(args, settings)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    except WarehouseUnavailable as exc:
        log.error("%s", exc)
        return EXIT_WAREHOUSE
    except psycopg.errors.InsufficientPrivilege as exc:
        log.error("warehouse error: the role of DORA_DATABASE_URL may not do what the pipeline needs (%s); "
                  "use the pipeline's role, not the read-only one", first_line(exc))
        return EXIT_WAREHOUSE
    except SourceError as exc:
        log.error("source failed, nothing of that partition was loaded: %s", exc)
        return EXIT_SOURCE
    except ModelError as exc:
        log.error("model failed, the previously published tables are unchanged: %s", exc)
        return EXIT_MODEL
    except psycopg.Error as exc:
        log.error("warehouse error (%s): %s", type(exc).__name__, first_line(exc))
        return EXIT_WAREHOUSE


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "migrate":
        warehouse = Warehouse(settings)
        applied = warehouse.migrate()
        log.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")
        log.info("reader role %s can read schema dora_metrics", settings.reader_role)
        return 0
    if args.command == "db":
        if args.action == "url":
            url = Warehouse(settings).url
            if args.reader:
                url = as_user(url, settings.reader_role)
            print(redact_url(url) if settings.database_url else url)
        else:
            print("stopped" if stop_embedded(settings) else "not running")
        return 0
    if args.command == "webhook":
        from .webhook.app import serve

        serve(settings, args.host, args.port)
        return 0
    if args.command == "demo":
        return _demo(args, settings)
    if args.command == "report":
        return _report(args, settings)
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from .pipeline import configured_sources, days, run

    end = args.end or (datetime.now(UTC).date() - timedelta(days=1))
    start = args.start or end
    if start > end:
        raise ConfigError(f"--start {start} is after --end {end}")
    sources = None
    if args.source:
        try:
            sources = [get_source(name) for name in args.source]
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        not_configured = [(s.name, s.skip_reason(settings)) for s in sources if s.skip_reason(settings)]
        if not_configured:
            raise ConfigError("; ".join(f"source {n} is not configured: {why}" for n, why in not_configured))
    warehouse = Warehouse(settings)
    planned = {s.name: len(days(start, end)) if s.partitioned else 1 for s in configured_sources(settings, sources)}
    progress = Progress(args.status, planned, len(load_models().models))
    try:
        result = run(warehouse, start, end, args.as_of, sources, on_load=progress.on_load,
                     on_model=progress.on_model, full_refresh=args.full_refresh)
    finally:
        progress.finish()
    _summary(result, settings)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from .pipeline import run
    from .report.tables import print_tables

    end = datetime.now(UTC).date() - timedelta(days=1)
    settings = replace(
        settings, synthetic=True, synthetic_teams=args.teams, synthetic_services=args.services,
        synthetic_days=args.days, synthetic_seed=args.seed, synthetic_end=end.isoformat(),
    )
    warehouse = Warehouse(settings)
    log.info("warehouse: %s", redact_url(warehouse.url))
    start = end - timedelta(days=args.days - 1)
    log.info("demo: synthetic organisation of %d teams and %d services, %s..%s",
             args.teams, args.services, start, end)
    progress = Progress(args.status, {"synthetic": args.days}, len(load_models().models))
    try:
        result = run(warehouse, start, end, None, [get_source("synthetic")],
                     on_load=progress.on_load, on_model=progress.on_model)
    finally:
        progress.finish()
    with warehouse.connection() as conn:
        print_tables(conn)
    _summary(result, settings)
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from .report.html import write_report

    started = time.monotonic()
    result = write_report(settings, args.out, team=args.team, weeks=args.weeks)
    log.info("report written: %s (%.1f MB, %d group sections, %d charts, as of %s, read as %s) in %.1fs",
             result.path, result.bytes / 1e6, result.groups, result.charts,
             result.as_of.isoformat() if result.as_of else "unknown", result.reader, time.monotonic() - started)
    log.info("open it in a browser: %s", result.path.resolve().as_uri())
    return 0


def _report_command(settings: Settings) -> str:
    """The command that writes the report of what was just published, in this environment."""
    prefix = ""
    if not settings.database_url and settings.home != Path(".dora"):
        prefix = f"DORA_HOME={settings.home} "
    return f"{prefix}dora-pipeline report --out report.html"


def _summary(result, settings: Settings) -> None:
    for line in summary_lines(result, _report_command(settings)):
        log.info("%s", line)


if __name__ == "__main__":
    sys.exit(main())


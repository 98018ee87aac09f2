"""Progress and feedback of the long commands: plain lines when not on a terminal, a live
status line on one, nothing but warnings with --quiet, the end summary, and exit codes
that tell configuration, warehouse and model failures apart."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date, datetime

import pytest

from dora_pipeline.cli import main
from dora_pipeline.config import Settings
from dora_pipeline.pipeline import RunResult
from dora_pipeline.progress import Progress, StatusAwareHandler, StatusLine, summary_lines
from dora_pipeline.warehouse import Warehouse

END = date(2025, 3, 9)
RUN = ["run", "--source", "synthetic", "--start", "2025-03-03", "--end", END.isoformat()]


@pytest.fixture(autouse=True)
def _every_test_restores_logging(restore_logging):  # conftest.py
    yield


@pytest.fixture
def synthetic_env(monkeypatch, settings):
    """The CLI's environment: this test's database, a small synthetic organisation."""
    env = {
        "DORA_DATABASE_URL": settings.database_url.get(),
        "DORA_HOME": str(settings.home),
        "DORA_READER_ROLE": settings.reader_role,
        "DORA_PSEUDONYM_KEY": "test-pseudonym-key",
        "DORA_SYNTHETIC": "true",
        "DORA_SYNTHETIC_TEAMS": "2",
        "DORA_SYNTHETIC_SERVICES": "4",
        "DORA_SYNTHETIC_DAYS": "7",
        "DORA_SYNTHETIC_END": END.isoformat(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_run_not_on_a_terminal_logs_plain_progress_lines_and_a_summary(synthetic_env, capsys):
    assert main(RUN) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err  # no terminal control codes in a log
    assert "extract synthetic 2025-03-03: " in err and "(1/7 partitions," in err  # the first partition, counted
    assert "extract synthetic done: 7 partitions, " in err and " quarantined in " in err
    models = [line for line in err.splitlines() if " INFO  model " in line]
    assert models and all(" rows in " in line for line in models)
    total = models[0].split(" model 1/")[1].split(" ")[0]
    assert f" model {total}/{total} " in models[-1]  # every model, numbered
    assert "models done: " in err
    assert "done: as of 2025-03-10T00:00:00+00:00 in " in err  # the summary
    assert "rows per source: synthetic " in err
    # four tiers of five tiered measures (failed deployment recovery time is the fifth)
    assert "published: dora_metrics.benchmarks (20)" in err and "dora_metrics.team_metrics_weekly (" in err
    assert "next: dora-pipeline report --out report.html" in err


def test_quiet_shows_no_progress_and_no_summary(synthetic_env, capsys):
    assert main([*RUN, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_verbose_adds_every_partition(synthetic_env, capsys):
    assert main([*RUN, "-v"]) == 0
    err = capsys.readouterr().err
    assert sum("extract synthetic 2025-03-" in line for line in err.splitlines()) == 7


def test_configuration_error_exits_2(synthetic_env, monkeypatch, capsys):
    monkeypatch.setenv("DORA_INCIDENT_WINDOW_HOURS", "abc")
    assert main(RUN) == 2
    assert "DORA_INCIDENT_WINDOW_HOURS must be a whole number, got 'abc'" in capsys.readouterr().err


def test_unreachable_warehouse_exits_3(synthetic_env, monkeypatch, capsys):
    monkeypatch.setenv("DORA_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")
    assert main(RUN) == 3
    assert "cannot connect to the warehouse" in capsys.readouterr().err


def test_model_failure_exits_5_and_names_the_model(synthetic_env, monkeypatch, capsys):
    # Settings are validated before anything runs (exit 2), so the model failure comes
    # from the warehouse: an operator renamed a column of the tier bands the marts read.
    assert main(RUN) == 0
    with Warehouse(Settings.from_env()).connection() as conn:
        conn.execute("alter table dora_lib.tier_bands rename column unit to units")
        conn.commit()
    capsys.readouterr()
    assert main(RUN) == 5
    err = capsys.readouterr().err
    assert "extract synthetic done: 7 partitions" in err  # the sources went through
    assert "model failed, the previously published tables are unchanged: marts/benchmarks.sql" in err
    assert 'column b.unit does not exist' in err


# --- the progress object on its own ----------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@dataclass
class _Source:
    name: str


@dataclass
class _Load:
    total_rows: int
    quarantined: int = 0


@dataclass
class _Model:
    qualified: str
    published: bool = False


def test_on_a_terminal_one_status_line_is_redrawn_and_log_lines_print_above_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # the status line is cut at the terminal's width
    terminal = _Terminal()
    status = StatusLine(terminal, min_interval=0)
    logger = logging.getLogger("dora_pipeline")
    handler = StatusAwareHandler(terminal, status)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_handlers, old_level, old_propagate = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        ticks = iter(range(100))
        progress = Progress(status, {"synthetic": 2}, 2, clock=lambda: float(next(ticks)))
        progress.on_load(_Source("synthetic"), date(2025, 3, 1), _Load(10))
        assert terminal.getvalue().endswith("extract synthetic [##########..........] 1/2 partitions · 10 rows · "
                                            "0 quarantined · 1.0s")
        progress.on_load(_Source("synthetic"), date(2025, 3, 2), _Load(5, 1))
        progress.on_model(_Model("dora_staging.a"), 3, 0.1)
        progress.on_model(_Model("dora_marts.b", published=True), 4, 0.1)
        progress.finish()
    finally:
        logger.handlers[:], logger.propagate = old_handlers, old_propagate
        logger.setLevel(old_level)
    screen = terminal.getvalue()
    assert "\r\x1b[2K" in screen
    assert "models [####################] 2/2 · dora_marts.b 4 rows" in screen
    # What stays on screen once every status line is erased: one line per finished step.
    lines = [part.split("\r\x1b[2K")[-1] for part in screen.split("\n")]
    assert any(line.startswith("extract synthetic done: 2 partitions, 15 rows, 1 quarantined in ") for line in lines)
    assert any(line.startswith("models done: 2 built (1 marts), 7 rows in ") for line in lines)
    assert screen.endswith("\n")  # the status line is gone at the end


def test_summary_lines_name_rows_quarantine_tables_and_the_next_command():
    result = RunResult(published={"team_metrics": 27}, as_of=datetime.fromisoformat("2025-03-10T00:00:00+00:00"),
                       seconds={"extract": 1.25, "models": 2.5})
    result.loads = [type("L", (), {"source": "github", "total_rows": 1200, "quarantined": 3})()]
    lines = summary_lines(result, "dora-pipeline report --out report.html")
    assert lines[0] == "done: as of 2025-03-10T00:00:00+00:00 in 1.2s extract + 2.5s models"
    assert "github 1,200 rows (3 quarantined)" in lines[1]
    assert "3 rows, reasons in dora_raw.quarantine" in lines[2]
    assert lines[3] == "  published: dora_metrics.team_metrics (27)"
    assert lines[4] == "  next: dora-pipeline report --out report.html"

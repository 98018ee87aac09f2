"""The HTML report: what it reads (dora_metrics only, as the reader login when configured),
what it shows (every group, trends with tier bands, gaps with reasons, optional SPACE
tables) and what it never contains (URLs, scripts)."""

from __future__ import annotations

import json
import os
import re
import uuid
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from browser import Browser, find_chromium
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from dora_pipeline.config import ConfigError, Settings
from dora_pipeline.pipeline import run
from dora_pipeline.report.html import (
    METRICS,
    TIER_FILLS,
    Band,
    Charts,
    Series,
    missing_reason,
    normalise_team,
    series,
    write_report,
    y_limits,
    y_ticks,
)
from dora_pipeline.sources import get_source
from dora_pipeline.warehouse import Warehouse, WarehouseUnavailable, ensure_reader_role

from conftest import _with_dbname

END = date(2025, 3, 30)  # a Sunday: the last week of the report is whole
OPTIONAL_TABLES = ("lead_time_breakdown_weekly", "team_space_survey", "team_space_activity_weekly",
                   "improvement_candidates")


# --- pure helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "row", "reason"),
    [
        ("median_lead_time_hours", {"deployments": 0, "median_lead_time_hours": None}, "no deploys"),
        ("median_lead_time_hours", {"deployments": 3, "median_lead_time_hours": None}, "no linked PRs"),
        ("change_failure_rate_pct", {"deployments": 0, "change_failure_rate_pct": None}, "no deploys"),
        ("median_time_to_restore_minutes", {"incidents": 0, "median_time_to_restore_minutes": None},
         "no incidents"),
        ("median_time_to_restore_minutes", {"incidents": 2, "median_time_to_restore_minutes": None},
         "incidents not resolved yet"),
        ("change_failure_rate_pct", {"deployments": 4, "change_failure_rate_pct": 0}, None),
        ("deploys_per_day", {"deployments": 0, "deploys_per_day": 0}, None),
        ("deploys_per_day", None, "no activity yet"),
    ],
)
def test_missing_values_have_a_reason_and_zero_is_a_value(metric, row, reason):
    assert missing_reason(metric, row) == reason


def test_series_keeps_gaps_as_none_with_runs_of_reasons():
    weeks = [date(2025, 3, 3) + timedelta(days=7 * i) for i in range(5)]
    rows = {
        weeks[0]: {"deployments": 2, "change_failure_rate_pct": 50},
        weeks[1]: {"deployments": 0, "change_failure_rate_pct": None},
        weeks[2]: {"deployments": 0, "change_failure_rate_pct": None},
        weeks[4]: {"deployments": 1, "change_failure_rate_pct": 0},
    }
    data = series(rows, weeks, "change_failure_rate_pct")
    assert data.values == [50.0, None, None, None, 0.0]
    assert data.gap_runs() == [(1, 2, "no deploys"), (3, 3, "no activity yet")]


def test_axis_shows_the_data_and_the_nearest_tier_boundaries():
    lead_time = next(m for m in METRICS if m.column == "median_lead_time_hours")
    bands = [Band(lead_time.column, t, lo, hi, True, False, "hours")
             for t, lo, hi in (("elite", 0, 24), ("high", 24, 168), ("medium", 168, 720), ("low", 720, None))]
    lo, hi = y_limits(lead_time, [10.0, None, 50.0], bands)
    assert lo < 10 and 168 < hi < 720  # elite and high fully, the start of medium
    assert {10.0, 24.0, 168.0} <= set(y_ticks(lead_time, (lo, hi), bands))  # a decade beside the bounds
    cfr = next(m for m in METRICS if m.column == "change_failure_rate_pct")
    assert y_limits(cfr, [None, None], []) [0] == 0


def test_team_shorthands_are_normalised():
    assert normalise_team("team-a") == normalise_team("group:team-a") == "group:default/team-a"
    assert normalise_team("group:Other/Team-B") == "group:other/team-b"


def test_inline_svg_has_no_urls_unique_ids_and_a_text_alternative():
    weeks = [date(2025, 3, 3) + timedelta(days=7 * i) for i in range(6)]
    data = Series(weeks, [1.0, None, 3.0, 2.0, None, 4.0],
                  [None, "no deploys", None, None, "no deploys", None], [None] * 6)
    charts = Charts()
    metric = METRICS[2]
    first = charts.trend(metric, data, [], False, "CFR <one>", "desc & more")
    second = charts.trend(metric, data, [], False, "CFR two", "desc")
    for svg in (first, second):
        assert "http" not in svg and "<?xml" not in svg and "DOCTYPE" not in svg
        assert svg.startswith('<svg viewBox="') and 'role="img"' in svg
    assert "<title id=\"c1-t\">CFR &lt;one&gt;</title>" in first and "desc &amp; more" in first
    ids = re.findall(r' id="([^"]+)"', first + second)
    assert len(ids) == len(set(ids))
    assert all(ref in ids for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', first) for ref in ref if ref)
    assert "no deploys" in first  # the gap is labelled on the chart


def test_charts_draw_hostile_names_as_text_mark_the_partial_week_and_keep_service_names_whole(recwarn):
    weeks = [date(2025, 3, 3) + timedelta(days=7 * i) for i in range(6)]
    rows = {w: {"deployments": 3, "deploys_per_day": 0.4, "median_lead_time_hours": 20.0,
                "change_failure_rate_pct": 0.0, "median_time_to_restore_minutes": None, "incidents": 0}
            for w in weeks}
    charts = Charts()
    data = series(rows, weeks, "deploys_per_day")
    trend = charts.trend(METRICS[0], data, [], True, "Deployment frequency, $x^$ \x1b[2J", "d")
    assert "$x^$" in trend and "partial" in trend
    long_name = "component:default/" + "legacy-ingest-api-" * 3 + "\u202eend"
    multiples = charts.small_multiples([(long_name, rows)], weeks, {}, True, "Services", "d")
    assert "legacy-ingest-api-legacy-ingest-api-legacy-ingest-api-\\u202eend" in multiples
    activity = charts.activity(weeks, series({w: {"merged_prs": 5} for w in weeks}, weeks, "merged_prs"), [],
                               "PR activity 🚀", "d", partial_last=True)
    assert "partial" in activity
    assert not [w for w in recwarn if "Glyph" in str(w.message)]


# --- against a published warehouse -----------------------------------------------------


@pytest.fixture(scope="module")
def published_db(pg_server_url, template_db):
    """A database with a small synthetic organisation run through the pipeline once, and a
    reader login role with a password (roles are cluster-wide: a unique name)."""
    name = f"dora_report_{uuid.uuid4().hex[:8]}"
    role = f"dora_reader_r{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name),
                                                                       sql.Identifier(template_db)))
    url = _with_dbname(pg_server_url, name)
    settings = Settings.from_env({
        "DORA_DATABASE_URL": url, "DORA_READER_ROLE": role, "DORA_READER_PASSWORD": "reader-secret-pw",
        "DORA_PSEUDONYM_KEY": "test-pseudonym-key", "DORA_SYNTHETIC": "true", "DORA_SYNTHETIC_TEAMS": "3",
        "DORA_SYNTHETIC_SERVICES": "8", "DORA_SYNTHETIC_DAYS": "42", "DORA_SYNTHETIC_END": END.isoformat(),
    })
    warehouse = Warehouse(settings)
    with warehouse.connection() as conn:
        ensure_reader_role(conn, settings)
        conn.commit()
    run(warehouse, END - timedelta(days=41), END, sources=[get_source("synthetic")])
    yield url, role
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def _settings(url: str, role: str, reader_login: bool = True, **env: str) -> Settings:
    base = {"DORA_DATABASE_URL": url, "DORA_READER_ROLE": role, "DORA_HOME": "/nonexistent-dora-home"}
    if reader_login:
        base["DORA_READER_PASSWORD"] = "reader-secret-pw"
    return Settings.from_env({**base, **env})


@pytest.fixture(scope="module")
def published_settings(published_db) -> Settings:
    """Settings that read the published database as the reader login."""
    return _settings(*published_db)


@contextmanager
def clone(published_db, pg_server_url):
    """A throwaway copy of the published database (to change published tables in)."""
    url, role = published_db
    name = f"dora_report_c{os.getpid()}_{uuid.uuid4().hex[:6]}"
    source = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(source)))
    try:
        yield _with_dbname(pg_server_url, name), role
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _groups(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select distinct group_ref from dora_metrics.team_metrics order by 1")]


def _leaf_team(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select min(group_ref) from dora_metrics.team_metrics t where not exists "
            "(select 1 from dora_metrics.team_metrics c where c.parent_ref = t.group_ref)"
        ).fetchone()[0]


def _sections(page: str) -> dict[str, str]:
    parts = re.split(r'(?=<section id="[^"]+" class="team )', page)
    out = {}
    for part in parts[1:]:
        section_id = re.match(r'<section id="([^"]+)"', part).group(1)
        out[section_id] = part.split("</section>")[0]
    return out


def test_report_as_the_reader_login_shows_every_group_with_charts_and_no_urls(published_db, published_settings,
                                                                               tmp_path):
    url, role = published_db
    result = write_report(published_settings, tmp_path / "out" / "report.html")
    page = result.path.read_text(encoding="utf-8")

    assert result.reader == role  # read as the reader login: it can read nothing but dora_metrics
    assert f"as role <code>{role}</code>" in page
    groups = _groups(url)
    sections = _sections(page)
    assert result.groups == len(groups) == len(sections) >= 3
    for group in groups:
        section = sections[re.sub(r"[^a-z0-9]+", "-", group).strip("-")]
        assert section.count("<svg ") >= 4, group
        for metric in METRICS:
            assert "<title id=" in section and f"{metric.title}, {group.split('/')[1]}" in section
        assert "Weekly numbers of" in section  # the data table fallback
    # Self-contained: no URL of any kind, no script, no external resource.
    assert not re.search(r"https?:|//[a-z]", page, re.I)
    assert "<script" not in page and " src=" not in page and "@import" not in page and "url(" not in page.replace(
        "url(#", "")
    # Benchmark bands behind the lines, and the tier thresholds in text.
    assert TIER_FILLS["elite"] in page and TIER_FILLS["low"] in page
    assert "Components per tier" in page and 'id="benchmarks"' in page
    assert "reader-secret-pw" not in page


def test_team_and_weeks_limit_the_report(published_db, published_settings, tmp_path):
    team = _leaf_team(published_db[0])
    result = write_report(published_settings, tmp_path / "team.html", team=team.split("/")[1], weeks=4)
    page = result.path.read_text(encoding="utf-8")
    sections = _sections(page)
    assert list(sections) == [re.sub(r"[^a-z0-9]+", "-", team).strip("-")]
    weekly_rows = re.findall(r'<tr><th scope="row">(\d{4}-\d{2}-\d{2})</th>', sections[next(iter(sections))])
    assert len(weekly_rows) == 4
    assert weekly_rows[-1] == "2025-03-24"  # the ISO week holding the last day
    assert "4 weeks from" in page


def test_unknown_team_is_a_configuration_error(published_settings, tmp_path):
    with pytest.raises(ConfigError, match="no such group"):
        write_report(published_settings, tmp_path / "x.html", team="group:default/nobody")


def test_without_reader_login_reads_dora_metrics_as_the_warehouse_user(published_db, tmp_path):
    url, role = published_db
    result = write_report(_settings(url, role, reader_login=False), tmp_path / "r.html", team=_leaf_team(url),
                          weeks=2)
    assert result.reader != role and result.groups == 1


def test_missing_data_is_a_labelled_gap_never_zero(published_db, pg_server_url, tmp_path):
    team = _leaf_team(published_db[0])
    with clone(published_db, pg_server_url) as (url, role):
        with psycopg.connect(url) as conn:
            week = conn.execute("select max(week_start) - 14 from dora_metrics.team_metrics_weekly").fetchone()[0]
            conn.execute(
                "update dora_metrics.team_metrics_weekly set deployments = 0, deploys_per_day = 0, "
                "median_lead_time_hours = null, change_failure_rate_pct = null, change_failure_tier = null, "
                "lead_time_tier = null, incidents = 0, median_time_to_restore_minutes = null, "
                "failed_deployments = 0, median_failed_deployment_recovery_minutes = null, "
                "failed_deployment_recovery_tier = null, rework_deployments = 0, rework_rate_pct = null "
                "where group_ref = %s and week_start = %s", (team, week))
        page = write_report(_settings(url, role), tmp_path / "gap.html", team=team).path.read_text()
    section = next(iter(_sections(page).values()))
    row = re.search(rf'<tr><th scope="row">{week.isoformat()}</th>(.*?)</tr>', section).group(1)
    # lead time, CFR, recovery and rework; time to restore
    assert row.count("– no deploys") == 4 and "– no incidents" in row
    assert f"{week:%d %b}: no deploys" in section  # in the chart captions
    assert "Gaps: 1 week no deploys" in section  # in the charts' text descriptions


def _replace_optional_tables(url: str, team: str) -> None:
    """Published SPACE tables with known rows, in the columns of their contracts."""
    with psycopg.connect(url) as conn:
        for table in OPTIONAL_TABLES:
            conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("dora_metrics", table)))
        conn.execute(
            "create table dora_metrics.lead_time_breakdown_weekly as "
            "select group_ref as entity_ref, 'group' as entity_kind, group_ref, week_start, "
            "lead_time_changes as prs, median_lead_time_hours, median_lead_time_hours * 0.3 as median_coding_hours, "
            "median_lead_time_hours * 0.1 as median_review_wait_hours, "
            "median_lead_time_hours * 0.2 as median_review_hours, "
            "median_lead_time_hours * 0.4 as median_release_hours from dora_metrics.team_metrics_weekly"
        )
        conn.execute(
            "create table dora_metrics.team_space_activity_weekly as "
            "select group_ref, parent_ref, week_start, deployments as merged_prs, "
            "median_lead_time_hours as median_pr_cycle_hours, 2.5::numeric as median_review_wait_hours, "
            "deployments as reviewed_prs from dora_metrics.team_metrics_weekly"
        )
        conn.execute(
            "create table dora_metrics.team_space_survey (group_ref text, survey_id text, period_start timestamptz, "
            "period_end timestamptz, eligible_members int, respondents int, response_rate_pct numeric, "
            "satisfaction_mean numeric, flow_state_mean numeric, suppressed boolean, suppression_reason text)"
        )
        conn.execute(
            "insert into dora_metrics.team_space_survey values "
            "(%s, 'pulse-1', '2025-02-01', '2025-02-08', 8, 3, 37.5, null, null, true, 'fewer_than_k'), "
            "(%s, 'pulse-2', '2025-03-01', '2025-03-08', 8, 7, 87.5, 3.86, 3.14, false, null)", (team, team),
        )
        conn.execute(
            "create table dora_metrics.improvement_candidates (entity_ref text, group_ref text, rule text, "
            "metric text, severity text, finding text, suggestion text, evidence jsonb, computed_at timestamptz)"
        )
        conn.execute(
            "insert into dora_metrics.improvement_candidates values (%s, %s, 'high_change_failure_rate', "
            "'change_failure_rate_pct', 'high', '5 of the last 12 deploys caused an incident', "
            "'consider a smoke-test workflow', %s, now())",
            ("component:default/x-api", team,
             psycopg.types.json.Jsonb({"recent_deployments": 12, "recent_failed_deployments": 5,
                                       "incidents": [{"id": "PD-1", "minutes": 42}]})),
        )


def test_space_tables_absent_say_not_published_yet(published_db, pg_server_url, tmp_path):
    with clone(published_db, pg_server_url) as (url, role):
        with psycopg.connect(url) as conn:
            for table in OPTIONAL_TABLES:
                conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("dora_metrics", table)))
        page = write_report(_settings(url, role), tmp_path / "absent.html").path.read_text()
    for section in _sections(page).values():
        for what in ("Lead-time breakdown", "Survey results", "Weekly activity", "Improvement candidates"):
            assert f"{what}: not published yet" in section


def test_space_tables_present_are_shown_with_suppression_and_evidence(published_db, pg_server_url, tmp_path):
    team = _leaf_team(published_db[0])
    with clone(published_db, pg_server_url) as (url, role):
        _replace_optional_tables(url, team)
        with psycopg.connect(url) as conn:
            ensure_reader_role(conn, _settings(url, role))  # the new tables: granted like published ones
            conn.commit()
        page = write_report(_settings(url, role, DORA_SURVEY_MIN_RESPONDENTS="5"), tmp_path / "space.html",
                            team=team).path.read_text()
    section = next(iter(_sections(page).values()))
    assert "not published yet" not in section
    assert "Lead-time breakdown, " in section and "lead time (total)" in section
    assert "Pull request activity, " in section
    assert "suppressed (fewer than 5 respondents)" in section and "3.86" in section
    assert "5 of the last 12 deploys caused an incident" in section
    assert "consider a smoke-test workflow" in section
    assert "recent failed deployments" in section and "PD-1" in section  # the evidence
    assert section.count("<svg ") >= 6  # four trends, breakdown, activity (+ services)


def test_nothing_published_is_a_clear_warehouse_error(settings, tmp_path):
    with pytest.raises(WarehouseUnavailable, match="nothing to report"):
        write_report(settings, tmp_path / "empty.html")




def test_cli_report_writes_the_file(published_db, monkeypatch, tmp_path, capsys, restore_logging):
    from dora_pipeline.cli import main

    url, role = published_db
    monkeypatch.setenv("DORA_DATABASE_URL", url)
    monkeypatch.setenv("DORA_READER_ROLE", role)
    monkeypatch.setenv("DORA_READER_PASSWORD", "reader-secret-pw")
    out = tmp_path / "cli.html"
    assert main(["report", "--out", str(out), "--weeks", "3", "--team", _leaf_team(url)]) == 0
    assert out.exists()
    err = capsys.readouterr().err
    assert "report written" in err and out.resolve().as_uri() in err
    assert "reader-secret-pw" not in err
    assert main(["report", "--out", str(out), "--team", "group:default/nobody"]) == 2
    monkeypatch.setenv("DORA_DATABASE_URL", _with_dbname(url, "no_such_db"))
    assert main(["report", "--out", str(out)]) == 3


# --- in a real browser -----------------------------------------------------------------

# Per team section: its id, how many SVG charts it holds and how many of them were laid
# out at a real size (a chart that failed to render has no box).
SECTIONS_JS = """
JSON.stringify(Array.from(document.querySelectorAll('section.team')).map(s => {
  const svgs = Array.from(s.querySelectorAll('svg.chart'));
  return {
    id: s.id,
    charts: svgs.length,
    // A trend draws its line, markers, axes and four tier bands; rework rate has no bands.
    drawn: svgs.filter(v => { const r = v.getBoundingClientRect(); return r.width > 200 && r.height > 80
                                && v.querySelectorAll('path').length
                                   > (v.querySelector('title').textContent.startsWith('Rework rate') ? 6 : 10);
                            }).length,
    titled: svgs.filter(v => v.querySelector('title') && v.querySelector('desc')).length,
  };
}))
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """Skipped without chromium locally; in CI (CI set) its absence is a failure."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run must `apt-get install -y chromium`")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")
    return path


def test_report_in_a_real_browser_loads_offline_without_errors_and_draws_every_team(chromium, published_settings,
                                                                                 tmp_path):
    """Debian's chromium opens the file: no console error, no request but the file itself,
    every team section's charts laid out, nothing wider than a 420 px phone screen; a
    screenshot on the way (DORA_REPORT_SCREENSHOT)."""
    report = write_report(published_settings, tmp_path / "report.html")
    url = report.path.resolve().as_uri()
    browser = Browser(chromium)
    try:
        browser.open(url)
        sections = json.loads(browser.evaluate(SECTIONS_JS))
        shot = Path(os.environ.get("DORA_REPORT_SCREENSHOT") or tmp_path / "report.png")
        browser.screenshot(shot, height=2400)
        # A phone: the page never scrolls sideways (tables and wide charts scroll in their box).
        browser.open(url, width=420, height=900)
        narrow = json.loads(browser.evaluate(
            "JSON.stringify([document.documentElement.scrollWidth, window.innerWidth, "
            "Array.from(document.querySelectorAll('svg.chart')).filter(v => v.getBoundingClientRect().width "
            ">= 280).length])"))
        errors, requests = browser.errors(), browser.requests()
    finally:
        browser.close()

    assert errors == []
    assert requests and set(requests) == {url}, f"requests beyond the file itself: {requests}"
    assert len(sections) == report.groups >= 3
    for section in sections:
        assert section["charts"] >= 4, section  # the four DORA trends, then breakdown, activity, services
        assert section["drawn"] == section["charts"], section
        assert section["titled"] == section["charts"], section
    assert narrow[0] <= narrow[1] == 420 and narrow[2] == report.charts
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""``dora-pipeline report``: one self-contained HTML file of the published metrics.

The report reads only the published schema ``dora_metrics`` (as ``DORA_READER_ROLE``
when ``DORA_READER_PASSWORD`` makes it a login role), so it shows exactly what Backstage
shows. Charts are drawn with matplotlib into inline SVG: the file has no script, no
external URL and no web font, and opens from disk with no network.

Three layers, each testable alone:

- ``load_published``: the rows, through one read-only connection, tolerant of the
  published tables that are not there yet (survey, activity, lead-time breakdown,
  improvement candidates: their sections say "not published yet").
- pure helpers (``missing_reason``, ``series``, ``y_limits``, ``inline_svg``): why a
  value is missing, what to plot, how to make matplotlib's SVG embeddable.
- ``render_html``: the page, with a text alternative for every chart (``<title>`` and
  ``<desc>`` inside the SVG, and the numbers in tables).
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..config import ConfigError, Settings
from ..text import chart_label, shorten, terminal, visible
from ..warehouse import PUBLISHED_SCHEMA, Warehouse, WarehouseUnavailable, connect, redact_url

log = logging.getLogger(__name__)

DEFAULT_WEEKS = 26
OVERVIEW_WINDOW_DAYS = 30
SURVEYS_SHOWN = 6  # latest surveys per group in its section


# --- what is plotted -------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    unit: str  # axis label: what one unit is
    short: str  # table header
    tier_column: str | None  # None: DORA publishes no tiers for it
    linthresh: float | None  # symlog scale, linear below this; None: a linear axis
    linscale: float = 0.35  # how many decades' height the linear part gets


METRICS = (
    Metric("deploys_per_day", "Deployment frequency", "deploys per day", "deploys/day",
           "deployment_frequency_tier", 1 / 30, 0.6),
    Metric("median_lead_time_hours", "Lead time for changes", "hours (median)", "lead time h",
           "lead_time_tier", 1.0),
    Metric("change_failure_rate_pct", "Change failure rate", "% of deployments", "CFR %",
           "change_failure_tier", None),
    Metric("median_time_to_restore_minutes", "Time to restore", "minutes (median)", "restore min",
           "time_to_restore_tier", 1.0),
    # DORA 2023/2024 (docs/metrics.md): recovery is tiered with the time-to-restore bands,
    # rework has no published bands.
    Metric("median_failed_deployment_recovery_minutes", "Failed deployment recovery time", "minutes (median)",
           "recovery min", "failed_deployment_recovery_tier", 1.0),
    Metric("rework_rate_pct", "Rework rate", "% of deployments", "rework %", None, None),
)
METRIC_BY_COLUMN = {m.column: m for m in METRICS}
TIERED = tuple(m for m in METRICS if m.tier_column)  # the metrics the tier overview counts
TIERS = ("elite", "high", "medium", "low")
# Okabe-Ito, safe for the common colour-vision deficiencies; every use also carries text.
TIER_COLOURS = {"elite": "#009E73", "high": "#56B4E9", "medium": "#E69F00", "low": "#D55E00"}
TIER_FILLS = {"elite": "#d3efe6", "high": "#daedf9", "medium": "#fbeccb", "low": "#f7dccc"}
NO_DATA_COLOUR = "#ffffff"
LINE_COLOUR = "#1b1b1b"
GAP_COLOUR = "#8c8c8c"
STAGE_STYLES = (  # the lead-time stages in order, each with its own colour, marker and dash
    ("coding", "#0072B2", "o", "-"),
    ("review_wait", "#E69F00", "s", "--"),
    ("review", "#009E73", "^", ":"),
    ("release", "#CC79A7", "D", "-."),
)


@dataclass(frozen=True)
class Band:
    """One tier's interval of one metric (a row of dora_metrics.benchmarks)."""

    metric: str
    tier: str
    lower: float | None
    upper: float | None
    lower_inclusive: bool
    upper_inclusive: bool
    unit: str

    def text(self) -> str:
        low = (None if self.lower is None else
               f"{'≥' if self.lower_inclusive else '>'} {tick_label(self.metric, self.lower)}")
        high = (None if self.upper is None else
                f"{'≤' if self.upper_inclusive else '<'} {tick_label(self.metric, self.upper)}")
        return " and ".join(p for p in (low, high) if p) or "any value"


def missing_reason(metric: str, row: Mapping[str, Any] | None) -> str | None:
    """Why ``metric`` has no value in ``row`` (a weekly or window row), None when it has one.

    A missing value is never zero: a week without deployments has no change failure
    rate, a week whose deployments shipped no linked PR has no lead time, a week
    without (resolved) incidents has no time to restore.
    """
    if row is None:
        return "no activity yet"
    if row.get(metric) is not None:
        return None
    deployments = row.get("deployments") or 0
    if metric == "median_lead_time_hours":
        return "no deploys" if deployments == 0 else "no linked PRs"
    if metric == "change_failure_rate_pct":
        return "no deploys"
    if metric == "median_time_to_restore_minutes":
        return "no incidents" if not row.get("incidents") else "incidents not resolved yet"
    if metric == "median_failed_deployment_recovery_minutes":
        if deployments == 0:
            return "no deploys"
        return "no failed deploys" if not row.get("failed_deployments") else "not recovered yet"
    if metric == "rework_rate_pct":
        return "no deploys"
    return "no data"


def tier_gap_reason(metric: Metric, row: Mapping[str, Any]) -> str | None:
    """Why a row has no tier for ``metric``, None when it has one."""
    if metric.tier_column is None or row.get(metric.tier_column):
        return None
    return missing_reason(metric.column, row) or "never deployed to production"


@dataclass
class Series:
    weeks: list[date]
    values: list[float | None]
    reasons: list[str | None]  # why the value is missing; None where there is one
    tiers: list[str | None]

    def gap_runs(self) -> list[tuple[int, int, str]]:
        """Consecutive weeks missing for the same reason: (first index, last index, reason)."""
        runs: list[tuple[int, int, str]] = []
        for i, reason in enumerate(self.reasons):
            if reason is None:
                continue
            if runs and runs[-1][1] == i - 1 and runs[-1][2] == reason:
                runs[-1] = (runs[-1][0], i, reason)
            else:
                runs.append((i, i, reason))
        return runs


def series(rows: Mapping[date, Mapping[str, Any]], weeks: Sequence[date], column: str,
           tier_column: str | None = None, reason=missing_reason) -> Series:
    out = Series(list(weeks), [], [], [])
    for week in weeks:
        row = rows.get(week)
        value = None if row is None else row.get(column)
        out.values.append(None if value is None else float(value))
        out.reasons.append(None if value is not None else reason(column, row))
        out.tiers.append(row.get(tier_column) if row is not None and tier_column else None)
    return out


def week_range(last_week: date, weeks: int) -> list[date]:
    return [last_week - timedelta(days=7 * i) for i in reversed(range(weeks))]


def monday_of(moment: datetime) -> date:
    day = (moment - timedelta(microseconds=1)).astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def number(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


def tick_label(metric: str, value: float) -> str:
    if metric == "deploys_per_day" and 0 < value < 1 and abs(1 / value - round(1 / value)) < 1e-6:
        return f"1/{round(1 / value)}"
    return number(value)


def y_limits(metric: Metric, values: Iterable[float | None], bands: Sequence[Band]) -> tuple[float, float]:
    """Axis limits that show the data and the tier boundaries next to it."""
    bounds = sorted({b for band in bands for b in (band.lower, band.upper) if b is not None and b > 0})
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if metric.linthresh is None:
        top = max([*finite, bounds[-1] * 4 / 3 if bounds else 1.0])
        return 0.0, top * 1.08
    if not finite:
        return (bounds[0] / 1.5, bounds[-1] * 1.5) if bounds else (0.0, 1.0)
    vmin, vmax = min(finite), max(finite)
    below = [b for b in bounds if b <= vmin]
    above = [b for b in bounds if b >= vmax]
    lo = 0.0 if vmin <= metric.linthresh else (below[-1] if below else vmin) / 1.5
    hi = (above[0] if above else vmax) * 1.5
    return lo, max(hi, lo + metric.linthresh)


def y_ticks(metric: Metric, limits: tuple[float, float], bands: Sequence[Band]) -> list[float]:
    """Ticks at the tier boundaries (the numbers that matter) and values between them: the
    decades (1, 10, 100, ...) on a log axis, so every band has a readable scale beside it."""
    lo, hi = limits
    bounds = sorted({b for band in bands for b in (band.lower, band.upper) if b is not None and b > 0})
    if metric.linthresh is None:
        # A small rate (rework, a few percent) still gets a readable scale.
        step = 0.5 if hi <= 2.5 else 1 if hi <= 8 else 5 if hi <= 40 else 10 if hi <= 80 else 25
        return [i * step for i in range(int(hi / step) + 1)]
    inside = [v for v in bounds if lo <= v <= hi]
    decades = [d for d in (10.0**k for k in range(-3, 8)) if max(lo, metric.linthresh) <= d <= hi]
    # A decade right next to a boundary would print over it: the boundary wins.
    extra = [d for d in decades if all(abs(math.log10(d / b)) > 0.25 for b in inside)]
    while len(inside) + len(extra) > 8 and len(extra) > 1:
        extra = extra[::2]
    return sorted({*inside, *extra, *([0.0] if lo == 0 else [])})


# --- reading dora_metrics --------------------------------------------------------------


@dataclass
class Published:
    """Everything the report shows, read from dora_metrics."""

    reader: str  # the role the rows were read as
    as_of: datetime | None
    columns: dict[str, list[str]]  # published table -> its columns
    bands: dict[str, list[Band]]
    groups: dict[str, str | None]  # group_ref -> parent_ref
    team_windows: dict[str, dict[int, dict]]  # group_ref -> window_days -> row
    team_weeks: dict[str, dict[date, dict]]
    services: dict[str, dict]  # entity_ref -> its 30-day window row (owner_ref included)
    service_weeks: dict[str, dict[date, dict]]
    data_quality: list[dict]
    survey: list[dict] | None = None  # None: table not published yet
    activity: dict[str, dict[date, dict]] | None = None
    activity_columns: list[str] = field(default_factory=list)
    breakdown: dict[str, dict[date, dict]] | None = None  # entity_ref -> week -> stage medians
    stage_columns: list[str] = field(default_factory=list)
    candidates: list[dict] | None = None


def reader_connection(settings: Settings, warehouse: Warehouse | None = None) -> psycopg.Connection:
    """A read-only connection for the report: as the reader login when it has a password."""
    warehouse = warehouse or Warehouse(settings)
    kwargs: dict[str, Any] = {"row_factory": dict_row}
    if settings.reader_password:
        # Same server and database, the reader's credentials (never in the URL: messages show it).
        kwargs.update(user=settings.reader_role, password=settings.reader_password.get())
    conn = connect(warehouse.url, **kwargs)
    conn.read_only = True
    return conn


def _select(conn: psycopg.Connection, columns: dict[str, list[str]], table: str,
            wanted: Sequence[str] | None = None, where: sql.Composable | None = None,
            params: Sequence[Any] = ()) -> list[dict]:
    """Rows of ``dora_metrics.<table>``; only the wanted columns that the table has."""
    present = columns[table]
    chosen = present if wanted is None else [c for c in wanted if c in present]
    query = sql.SQL("select {} from {}").format(
        sql.SQL(", ").join(map(sql.Identifier, chosen)), sql.Identifier(PUBLISHED_SCHEMA, table)
    )
    if where is not None:
        query += sql.SQL(" where ") + where
    return conn.execute(query, params).fetchall()


def _float(value):
    return None if value is None else float(value)


def _by_week(rows: Iterable[dict], key: str) -> dict[str, dict[date, dict]]:
    out: dict[str, dict[date, dict]] = {}
    for row in rows:
        out.setdefault(row[key], {})[row["week_start"]] = row
    return out


_WEEKLY_COLUMNS = ["deployments", "lead_time_changes", "lead_time_coverage_pct", "failed_deployments",
                   "incidents", "open_incidents"] + [c for m in METRICS for c in (m.column, m.tier_column) if c]

BREAKDOWN_TABLE = "lead_time_breakdown_weekly"
_STAGE_RE = re.compile(r"^median_(\w+)_hours$")


def load_published(conn: psycopg.Connection, weeks: int = DEFAULT_WEEKS) -> Published:
    """Read what the report shows; raises WarehouseUnavailable when nothing is published."""
    columns: dict[str, list[str]] = {}
    for row in conn.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = %s order by table_name, ordinal_position",
        (PUBLISHED_SCHEMA,),
    ):
        columns.setdefault(row["table_name"], []).append(row["column_name"])
    required = {"team_metrics", "team_metrics_weekly", "service_metrics", "service_metrics_weekly", "benchmarks"}
    if not required <= columns.keys():
        missing = ", ".join(sorted(required - columns.keys()))
        raise WarehouseUnavailable(
            f"nothing to report: {PUBLISHED_SCHEMA} lacks {missing} (or this role may not read it); "
            "run `dora-pipeline demo` or `dora-pipeline run` first"
        )
    reader = conn.execute("select current_user as u").fetchone()["u"]
    as_of = conn.execute(
        sql.SQL("select max(window_end) as as_of from {}").format(sql.Identifier(PUBLISHED_SCHEMA, "team_metrics"))
    ).fetchone()["as_of"]
    last_week = monday_of(as_of) if as_of else date.today() - timedelta(days=date.today().weekday())
    first_week = last_week - timedelta(days=7 * (weeks - 1))
    since = sql.SQL("week_start >= %s")

    bands: dict[str, list[Band]] = {}
    for row in _select(conn, columns, "benchmarks"):
        bands.setdefault(row["metric"], []).append(Band(
            row["metric"], row["tier"], _float(row.get("lower_bound")), _float(row.get("upper_bound")),
            bool(row.get("lower_inclusive", True)), bool(row.get("upper_inclusive", False)), row.get("unit") or "",
        ))
    for metric_bands in bands.values():
        metric_bands.sort(key=lambda b: TIERS.index(b.tier) if b.tier in TIERS else 9)

    team_windows: dict[str, dict[int, dict]] = {}
    groups: dict[str, str | None] = {}
    for row in _select(conn, columns, "team_metrics"):
        team_windows.setdefault(row["group_ref"], {})[row["window_days"]] = row
        groups[row["group_ref"]] = row.get("parent_ref")
    team_weeks = _by_week(_select(conn, columns, "team_metrics_weekly",
                                  ["group_ref", "parent_ref", "week_start", *_WEEKLY_COLUMNS], since, (first_week,)),
                          "group_ref")
    services = {
        row["entity_ref"]: row
        for row in _select(conn, columns, "service_metrics", None, sql.SQL("window_days = %s"), (OVERVIEW_WINDOW_DAYS,))
    }
    service_weeks = _by_week(_select(conn, columns, "service_metrics_weekly",
                                     ["entity_ref", "week_start", *_WEEKLY_COLUMNS], since, (first_week,)),
                             "entity_ref")
    data_quality = _select(conn, columns, "data_quality") if "data_quality" in columns else []
    published = Published(reader, as_of, columns, bands, groups, team_windows, team_weeks, services,
                          service_weeks, data_quality)

    if "team_space_survey" in columns:
        published.survey = _select(conn, columns, "team_space_survey")
    if "team_space_activity_weekly" in columns:
        cols = columns["team_space_activity_weekly"]
        if {"group_ref", "week_start"} <= set(cols):
            published.activity = _by_week(_select(conn, columns, "team_space_activity_weekly", None, since,
                                                  (first_week,)), "group_ref")
            published.activity_columns = [c for c in cols if c == "merged_prs" or _STAGE_RE.match(c)]
    if BREAKDOWN_TABLE in columns:
        cols = columns[BREAKDOWN_TABLE]
        stage_order = [name for name, *_ in STAGE_STYLES]
        stages = [c for c in cols if (m := _STAGE_RE.match(c)) and m.group(1) in stage_order]
        published.stage_columns = sorted(stages, key=lambda c: stage_order.index(_STAGE_RE.match(c).group(1)))
        published.breakdown = _by_week(_select(conn, columns, BREAKDOWN_TABLE, None, since, (first_week,)),
                                       "entity_ref")
    if "improvement_candidates" in columns:
        published.candidates = _select(conn, columns, "improvement_candidates")
    return published


# --- charts ----------------------------------------------------------------------------

_RC = {
    "svg.fonttype": "none",  # text stays text: selectable, searchable, small
    "svg.hashsalt": "dora-report",  # stable ids, so the same data gives the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.labelcolor": "#222222",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "hatch.linewidth": 0.6,
    "legend.frameon": False,
    # Names are data: "$x^$" in a group name is text, never math (which could fail the chart).
    "text.parse_math": False,
}
PARTIAL_FILL = "#e4e4e4"


def inline_svg(svg: str, key: str, title: str, desc: str) -> str:
    """matplotlib's SVG document made fit to inline in HTML next to others.

    Drops the XML prolog, the namespace URLs and the document-wide ``*`` style; gives
    every referenced id the chart's prefix (charts are drawn alone, their ids would
    collide) and drops the others; makes the chart responsive; adds ``<title>`` and
    ``<desc>`` and ``role="img"`` so assistive technology reads it as one image.
    """
    from markupsafe import Markup, escape

    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<defs>\s*<style[^>]*>.*?</style>\s*</defs>", "", svg, count=1, flags=re.S)
    referenced = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
    svg = re.sub(r'\sid="([^"]+)"',
                 lambda m: f' id="{key}-{m.group(1)}"' if m.group(1) in referenced else "", svg)
    svg = re.sub(r'(href="#|url\(#)([^")]+)', lambda m: f"{m.group(1)}{key}-{m.group(2)}", svg)
    svg = re.sub(r"\n\s*", "\n", svg)
    root_end = svg.index(">")
    root = svg[:root_end]
    view_box = re.search(r'viewBox="([^"]+)"', root).group(1)
    width_pt = float(view_box.split()[2])
    head = (
        f'<svg viewBox="{view_box}" class="chart" role="img" aria-labelledby="{key}-t {key}-d" '
        f'style="max-width:{width_pt * 4 / 3:.0f}px;min-width:{width_pt * 4 / 3 * 0.7:.0f}px" focusable="false">'
        f'<title id="{key}-t">{escape(title)}</title><desc id="{key}-d">{escape(desc)}</desc>'
    )
    # matplotlib writes the SVG and escapes its text; title and desc are escaped above.
    return Markup(head + svg[root_end + 1:].strip())


class Charts:
    """Draws the report's charts; one instance per report (it numbers the chart ids)."""

    def __init__(self) -> None:
        import matplotlib  # imported here: the rest of the CLI does not pay for it

        self._mpl = matplotlib
        self._count = 0

    def _svg(self, fig, title: str, desc: str) -> str:
        self._count += 1
        buffer = io.StringIO()
        with warnings.catch_warnings():
            # With svg.fonttype "none" the browser draws the text in its own fonts; a glyph
            # DejaVu lacks (an emoji) is no problem, and the warning would echo the name.
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        return inline_svg(buffer.getvalue(), f"c{self._count}", title, desc)

    def _figure(self, width: float, height: float, margins: tuple[float, float, float, float] | None = None):
        """A figure; ``margins`` (left, right, bottom, top) in inches fix the layout, which is
        much cheaper than the constrained layout engine used otherwise."""
        from matplotlib.figure import Figure

        if margins is None:
            return Figure(figsize=(width, height), layout="constrained")
        fig = Figure(figsize=(width, height))
        left, right, bottom, top = margins
        fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
        return fig

    def _time_axis(self, ax, weeks: Sequence[date], labels: bool = True, partial_last: bool = False,
                   most_ticks: int = 6) -> list[float]:
        """Weeks on x: concise date ticks (months, the year once), the partial last week shaded."""
        from matplotlib import dates as mdates
        from matplotlib.ticker import NullFormatter, NullLocator

        x = [float(v) for v in mdates.date2num(weeks)]
        ax.set_xlim(x[0] - 3.5, x[-1] + 3.5)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=most_ticks)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False)
                                     if labels else NullFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        if partial_last and x:
            ax.axvspan(x[-1] - 3.5, x[-1] + 3.5, facecolor=PARTIAL_FILL, edgecolor="none", zorder=0.5)
            ax.text(x[-1], 0.03, "partial", transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                    va="bottom", fontsize=5.5, color="#333333", zorder=5)
        return x

    def _bands(self, ax, bands: Sequence[Band], limits: tuple[float, float], labels: bool) -> None:
        """The tier bands behind the data, each labelled with its tier at the right edge."""
        lo, hi = limits
        for band in bands:
            b_lo = band.lower if band.lower is not None else lo - abs(hi)
            b_hi = band.upper if band.upper is not None else hi * 10 + 1
            ax.axhspan(b_lo, b_hi, facecolor=TIER_FILLS.get(band.tier, "#eeeeee"), linewidth=0, zorder=0)
            if not labels:
                continue
            visible_lo, visible_hi = max(b_lo, lo), min(b_hi, hi)
            if visible_hi <= visible_lo:
                continue
            to_axes = ax.transScale + ax.transLimits
            f_lo = to_axes.transform((0, visible_lo))[1]
            f_hi = to_axes.transform((0, visible_hi))[1]
            if f_hi - f_lo >= 0.09:
                ax.text(1.01, (f_lo + f_hi) / 2, band.tier, transform=ax.transAxes, va="center", ha="left",
                        fontsize=7, color="#333333")

    def _plot(self, ax, metric: Metric, data: Series, bands: Sequence[Band], limits: tuple[float, float],
              partial_last: bool, gap_labels: str, band_labels: bool, tick_labels: bool = True) -> None:
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

        x = self._time_axis(ax, data.weeks, tick_labels, partial_last, most_ticks=6 if band_labels else 3)
        if metric.linthresh is not None:
            ax.set_yscale("symlog", linthresh=metric.linthresh, linscale=metric.linscale)
        ax.set_ylim(*limits)
        ticks = y_ticks(metric, limits, bands)
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FixedFormatter([tick_label(metric.column, t) for t in ticks]))
        ax.yaxis.set_minor_locator(NullLocator())
        self._bands(ax, bands, limits, band_labels)
        self._gaps(ax, x, data, gap_labels)
        y = [math.nan if v is None else v for v in data.values]
        ax.plot(x, y, color=LINE_COLOUR, linewidth=1.5, marker="o", markersize=3 if gap_labels == "full" else 2,
                zorder=3)
        if partial_last and data.values and data.values[-1] is not None:
            ax.plot([x[-1]], [y[-1]], linestyle="none", marker="o", markersize=4.5, markerfacecolor="white",
                    markeredgecolor=LINE_COLOUR, zorder=4)

    def _gaps(self, ax, x: Sequence[float], data: Series, gap_labels: str) -> None:
        for first, last, reason in data.gap_runs():
            ax.axvspan(x[first] - 3.5, x[last] + 3.5, facecolor="none", edgecolor=GAP_COLOUR, hatch="////",
                       linewidth=0, zorder=1)
            weeks = last - first + 1
            if gap_labels == "full" or (gap_labels == "short" and weeks >= 3):
                vertical = gap_labels == "full" and weeks < 4
                ax.text((x[first] + x[last]) / 2, 0.97, reason, transform=ax.get_xaxis_transform(),
                        rotation=90 if vertical else 0, ha="center", va="top",
                        fontsize=6.5 if gap_labels == "full" else 5.5, color="#222222", zorder=5,
                        bbox={"boxstyle": "square,pad=0.15", "facecolor": "white", "edgecolor": "none",
                              "alpha": 0.85})

    def trend(self, metric: Metric, data: Series, bands: Sequence[Band], partial_last: bool,
              title: str, desc: str) -> str:
        with self._mpl.rc_context(_RC):
            fig = self._figure(5.2, 2.5, margins=(0.78, 0.5, 0.48, 0.28))
            ax = fig.add_subplot()
            self._plot(ax, metric, data, bands, y_limits(metric, data.values, bands), partial_last,
                       gap_labels="full", band_labels=True)
            ax.set_title(title)
            ax.set_ylabel(metric.unit)
            ax.set_xlabel("week starting (Monday, UTC)")
            return self._svg(fig, title, desc)

    def small_multiples(self, rows: Sequence[tuple[str, Mapping[date, Mapping]]], weeks: Sequence[date],
                        bands: Mapping[str, Sequence[Band]], partial_last: bool, title: str, desc: str) -> str:
        """One row of four panels per service; each column one metric on one shared scale."""
        from matplotlib.figure import Figure

        with self._mpl.rc_context({**_RC, "font.size": 7, "axes.titlesize": 7.5}):
            height = 1.1 + 1.15 * len(rows)
            # A fixed layout: the constrained engine costs more than the drawing here.
            fig = Figure(figsize=(9, height))
            fig.subplots_adjust(left=0.07, right=0.99, top=1 - 0.85 / height, bottom=0.3 / height,
                                wspace=0.3, hspace=0.55)
            axes = fig.subplots(len(rows), len(METRICS), squeeze=False)
            for j, metric in enumerate(METRICS):
                column = [series(weekly, weeks, metric.column, metric.tier_column) for _, weekly in rows]
                limits = y_limits(metric, [v for s in column for v in s.values], bands.get(metric.column, ()))
                for i, data in enumerate(column):
                    self._plot(axes[i][j], metric, data, bands.get(metric.column, ()), limits, partial_last,
                               gap_labels="short", band_labels=False, tick_labels=i == len(rows) - 1)
                axes[0][j].set_title(f"{metric.title}\n({metric.unit})")
            for i, (ref, _) in enumerate(rows):
                # The service's whole name on a line of its own above its row (a name at the
                # left of the row was cut from the left once longer than the margin).
                label = chart_label(short_ref(ref), 110)
                axes[i][0].text(-0.2, 1.04 if i else 1.4, label, transform=axes[i][0].transAxes, ha="left",
                                va="bottom", fontweight="bold", fontsize=7)
            fig.text(0.005, 1 - 0.12 / height, title, ha="left", va="top", fontsize=9, fontweight="bold")
            return self._svg(fig, title, desc)

    def stages(self, weeks: Sequence[date], stages: Sequence[tuple[str, Series]], total: Series, gap: Series,
               title: str, desc: str, figsize: tuple[float, float] = (10, 2.6), partial_last: bool = False) -> str:
        """Median hours per lead-time stage, one line each (medians of stages do not add up)."""
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

        with self._mpl.rc_context(_RC):
            fig = self._figure(*figsize)
            ax = fig.add_subplot()
            x = self._time_axis(ax, weeks, partial_last=partial_last)
            ax.set_yscale("symlog", linthresh=1.0, linscale=0.35)
            values = [v for _, s in (*stages, ("total", total)) for v in s.values if v is not None]
            hi = max(values, default=24) * 2
            ax.set_ylim(0, hi)
            ticks = [t for t in (0, 1, 4, 12, 24, 72, 168, 720, 2160) if t <= hi]
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FixedFormatter([number(t) for t in ticks]))
            ax.yaxis.set_minor_locator(NullLocator())
            self._gaps(ax, x, gap, "full")
            for name, data in stages:
                colour, marker, dash = _stage_style(name)
                ax.plot(x, [math.nan if v is None else v for v in data.values], color=colour, marker=marker,
                        linestyle=dash, linewidth=1.4, markersize=3, label=stage_label(name), zorder=3)
            ax.plot(x, [math.nan if v is None else v for v in total.values], color="#9a9a9a", linewidth=2.5,
                    marker="o", markersize=3, label="lead time (total)", zorder=2)
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
            ax.set_title(title)
            ax.set_ylabel("hours (median per stage)")
            ax.set_xlabel("week starting (Monday, UTC)")
            return self._svg(fig, title, desc)

    def activity(self, weeks: Sequence[date], merged: Series | None, hours: Sequence[tuple[str, Series]],
                 title: str, desc: str, partial_last: bool = False) -> str:
        with self._mpl.rc_context(_RC):
            fig = self._figure(10, 2.4)
            axes = fig.subplots(1, 2)
            if merged is not None:
                x = self._time_axis(axes[0], weeks, partial_last=partial_last)
                bars = axes[0].bar(x, [0 if v is None else v for v in merged.values], width=5, color="#0072B2",
                                   zorder=2)
                if partial_last and bars:  # the partial week's bar hollow, as the lines' last point
                    bars[-1].set(facecolor="white", edgecolor="#0072B2", hatch="....", linewidth=1)
                self._gaps(axes[0], x, merged, "full")
                axes[0].set_title("Merged pull requests per week")
                axes[0].set_ylabel("pull requests")
            else:
                axes[0].set_axis_off()
            x = self._time_axis(axes[1], weeks, partial_last=partial_last)
            for (name, data), (colour, marker, dash) in zip(hours, _cycle_styles(), strict=False):
                axes[1].plot(x, [math.nan if v is None else v for v in data.values], color=colour, marker=marker,
                             linestyle=dash, markersize=3, linewidth=1.4, label=stage_label(name), zorder=3)
            if hours:
                self._gaps(axes[1], x, hours[0][1], "full")
                axes[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
            axes[1].set_title("Median hours")
            axes[1].set_ylabel("hours (median)")
            fig.suptitle(title, x=0.0, ha="left", fontsize=9, fontweight="bold")
            return self._svg(fig, title, desc)

    def tier_distribution(self, counts: Mapping[str, Mapping[str | None, int]], title: str, desc: str) -> str:
        """Stacked bars: how many components sit in each tier, per metric."""
        from matplotlib.ticker import MaxNLocator

        with self._mpl.rc_context(_RC):
            fig = self._figure(10, 2.5)
            ax = fig.add_subplot()
            labels = [f"{m.title}" for m in TIERED]
            ys = list(range(len(TIERED)))[::-1]
            total = max((sum(counts[m.column].values()) for m in TIERED), default=0) or 1
            for tier in (*TIERS, None):
                lefts = [sum(counts[m.column].get(t, 0) for t in (*TIERS, None)[: (*TIERS, None).index(tier)])
                         for m in TIERED]
                widths = [counts[m.column].get(tier, 0) for m in TIERED]
                ax.barh(ys, widths, left=lefts, height=0.62, label=tier or "no data",
                        color=TIER_COLOURS.get(tier, NO_DATA_COLOUR), edgecolor=GAP_COLOUR if tier is None else "white",
                        hatch="////" if tier is None else None, linewidth=0.8, zorder=2)
                for y, left, width in zip(ys, lefts, widths, strict=True):
                    if width and width / total >= 0.035:
                        ax.text(left + width / 2, y, str(width), ha="center", va="center", fontsize=8,
                                color="#000000", zorder=3,
                                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                      "alpha": 0.75})
            ax.set_yticks(ys, labels)
            ax.set_xlim(0, total)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(f"components (last {OVERVIEW_WINDOW_DAYS} days)")
            ax.legend(ncols=5, loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8)
            ax.set_title(title, pad=22)
            return self._svg(fig, title, desc)


def _stage_style(name: str) -> tuple[str, str, str]:
    for stage, colour, marker, dash in STAGE_STYLES:
        if stage == name:
            return colour, marker, dash
    return "#555555", "v", "-"


def _cycle_styles():
    for _, colour, marker, dash in STAGE_STYLES:
        yield colour, marker, dash


def stage_label(name: str) -> str:
    return name.replace("_", " ")


def short_ref(ref: str) -> str:
    return ref.split("/", 1)[-1]


# --- the page --------------------------------------------------------------------------

TEMPLATE = "report.html.j2"
NAME_LIMIT = 80  # a longer name is shortened on the page, the full name in its title


def slug(ref: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", ref.lower()).strip("-")


def _fmt_date(day: date | datetime | None) -> str:
    if day is None:
        return "–"
    if isinstance(day, datetime):
        return day.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return day.isoformat()


def _environment():
    """The Jinja2 environment of the report: autoescape always on (the template is HTML
    whatever its file name), undefined names are errors, the text helpers as filters."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dora_pipeline.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(visible=visible, shorten=shorten, short_ref=short_ref)
    return env


@dataclass(frozen=True)
class ReportOptions:
    team: str | None = None
    weeks: int = DEFAULT_WEEKS
    survey_min_respondents: int = 5


def metric_cell(metric: Metric, row: Mapping | None) -> dict:
    """One table cell of a metric: a number with its tier, or the reason there is none."""
    if row is None:
        return {"kind": "gap", "text": "no activity yet"}
    value = row.get(metric.column)
    if value is None:
        return {"kind": "gap", "text": f"– {missing_reason(metric.column, row)}"}
    return {"kind": "num", "text": number(value), "tier": row.get(metric.tier_column)}


def metric_text(metric: Metric, row: Mapping) -> dict:
    value = row.get(metric.column)
    if value is None:
        return {"title": metric.title.lower(), "text": f"– ({missing_reason(metric.column, row)})", "tier": None}
    return {"title": metric.title.lower(), "text": f"{number(value)} {metric.short.split()[-1]}",
            "tier": row.get(metric.tier_column)}


class _Page:
    def __init__(self, data: Published, options: ReportOptions) -> None:
        self.data = data
        self.options = options
        self.charts = Charts()
        last_week = monday_of(data.as_of) if data.as_of else None
        self.weeks = week_range(last_week, options.weeks) if last_week else []
        # Weeks before the first published week of anyone would be all gap: start at that week.
        first = min((w for weekly in (*data.team_weeks.values(), *data.service_weeks.values()) for w in weekly),
                    default=None)
        if first is not None:
            self.weeks = [w for w in self.weeks if w >= first] or self.weeks[-1:]
        self.partial_last = bool(data.as_of and last_week and
                                 datetime(last_week.year, last_week.month, last_week.day, tzinfo=UTC)
                                 + timedelta(days=7) > data.as_of)
        self.children: dict[str, list[str]] = {}
        for group, parent in data.groups.items():
            self.children.setdefault(parent if parent in data.groups else None, []).append(group)
        for kids in self.children.values():
            kids.sort()
        self.groups = self._scope()

    def _scope(self) -> list[tuple[str, int]]:
        """(group, depth) in tree order; with --team, that group and its descendants."""
        out: list[tuple[str, int]] = []

        def walk(group: str, depth: int) -> None:
            out.append((group, depth))
            for child in self.children.get(group, []):
                walk(child, depth + 1)

        if self.options.team:
            walk(self.options.team, 0)
        else:
            for root in self.children.get(None, []):
                walk(root, 0)
        return out

    def pooled_services(self, group: str) -> list[str]:
        scope = {group}
        stack = [group]
        while stack:
            for child in self.children.get(stack.pop(), []):
                scope.add(child)
                stack.append(child)
        return sorted(ref for ref, row in self.data.services.items() if row.get("owner_ref") in scope)

    def owned_services(self, group: str) -> list[str]:
        return sorted(ref for ref, row in self.data.services.items() if row.get("owner_ref") == group)

    # -- the page's data, rendered by the template

    def render(self) -> str:
        from markupsafe import Markup

        scope_services = (self.pooled_services(self.options.team) if self.options.team
                          else sorted(self.data.services))
        d = self.data
        span = (f"{len(self.weeks)} weeks, {_fmt_date(self.weeks[0])} to {_fmt_date(self.weeks[-1])}"
                if self.weeks else "no weeks")
        unowned = sorted(ref for ref, row in d.services.items() if not row.get("owner_ref"))
        context = {
            # Our own stylesheet, not data: inlined as it is (escaping would break its quotes).
            "css": Markup((resources.files("dora_pipeline.report") / "templates" / "report.css").read_text(
                encoding="utf-8")),
            "team": self.options.team,
            "as_of": _fmt_date(d.as_of),
            "span": span,
            "schema": PUBLISHED_SCHEMA,
            "reader": d.reader,
            "generated": _fmt_date(datetime.now(UTC)),
            "partial_from": _fmt_date(self.weeks[-1]) if self.partial_last and self.weeks else None,
            "tiers": TIERS,
            "metrics": METRICS,
            "window_days": OVERVIEW_WINDOW_DAYS,
            "overview": self.overview(scope_services),
            "groups": [self.group_section(group, depth) for group, depth in self.groups],
            "unowned": (self.services("Services without an owner in the catalog", unowned)
                        if unowned and not self.options.team else None),
            "quality": self.quality(),
            "benchmarks": [{"metric": m.title, "tier": b.tier, "range": b.text(), "unit": b.unit}
                           for m in METRICS for b in d.bands.get(m.column, ())],
        }
        return _environment().get_template(TEMPLATE).render(context)

    def overview(self, services: list[str]) -> dict:
        counts: dict[str, dict[str | None, int]] = {m.column: {} for m in TIERED}
        reasons: dict[str, dict[str, int]] = {m.column: {} for m in TIERED}
        for ref in services:
            row = self.data.services[ref]
            for metric in TIERED:
                tier = row.get(metric.tier_column)
                tier = tier if tier in TIERS else None
                counts[metric.column][tier] = counts[metric.column].get(tier, 0) + 1
                if tier is None:
                    why = tier_gap_reason(metric, row) or "no data"
                    reasons[metric.column][why] = reasons[metric.column].get(why, 0) + 1
        title = f"Components per tier, last {OVERVIEW_WINDOW_DAYS} days"
        desc_parts, rows = [], []
        for metric in TIERED:
            c = counts[metric.column]
            why = ", ".join(f"{n} {r}" for r, n in sorted(reasons[metric.column].items()))
            desc_parts.append(f"{metric.title}: " + ", ".join(f"{c.get(t, 0)} {t}" for t in TIERS)
                              + f", {c.get(None, 0)} without data" + (f" ({why})" if why else ""))
            rows.append({"title": metric.title, "counts": [c.get(t, 0) for t in TIERS], "none": c.get(None, 0),
                         "why": why})
        chart = self.charts.tier_distribution(counts, title, f"{len(services)} components. "
                                              + "; ".join(desc_parts) + ".")
        roots = [self.options.team] if self.options.team else self.children.get(None, [])
        pooled = []
        for root in roots:
            window = self.data.team_windows.get(root, {}).get(OVERVIEW_WINDOW_DAYS)
            if window:
                pooled.append({"ref": root, "deployments": window.get("deployments"),
                               "cells": [metric_cell(m, window) for m in METRICS]})
        return {"services": len(services), "title": title, "chart": chart, "rows": rows, "pooled": pooled}

    def group_section(self, group: str, depth: int) -> dict:
        d = self.data
        weekly = d.team_weeks.get(group, {})
        parent = d.groups.get(group)
        in_scope = {g for g, _ in self.groups}
        window = d.team_windows.get(group, {}).get(OVERVIEW_WINDOW_DAYS)
        trends = []
        for metric in METRICS:
            data = series(weekly, self.weeks, metric.column, metric.tier_column)
            title = f"{metric.title}, {chart_label(short_ref(group))}"
            desc = describe_series(f"Weekly {metric.title.lower()} of {visible(group)}", metric, data,
                                   d.bands.get(metric.column, ()), self.partial_last)
            chart = self.charts.trend(metric, data, d.bands.get(metric.column, ()), self.partial_last, title, desc)
            trends.append({"chart": chart, "caption": gap_caption(data)})
        owned = self.owned_services(group)
        return {
            "ref": group, "slug": slug(group), "depth": min(depth, 3),
            "level": "h2" if depth == 0 else "h3" if depth == 1 else "h4",
            "pooled": len(self.pooled_services(group)),
            "parent": parent, "parent_slug": slug(parent) if parent in in_scope else None,
            "kids": [{"ref": k, "slug": slug(k)} for k in self.children.get(group, [])],
            "window": window and {"deployments": window.get("deployments"),
                                  "metrics": [metric_text(m, window) for m in METRICS]},
            "trends": trends,
            "breakdown": self.breakdown(group, weekly),
            "survey": self.survey(group),
            "activity": self.activity(group),
            "candidates": self.candidates(group),
            "services": self.services(f"Services of {short_ref(group)}", owned) if owned else None,
            "weekly": [{"week": w.isoformat(),
                        "deployments": (weekly[w].get("deployments") if w in weekly else "–"),
                        "cells": [metric_cell(m, weekly[w]) for m in METRICS] if w in weekly else None}
                       for w in self.weeks],
        }

    def breakdown(self, group: str, weekly: Mapping[date, Mapping]) -> dict:
        d = self.data
        if d.breakdown is None:
            return {"absent": f"Lead-time breakdown: not published yet (no {PUBLISHED_SCHEMA}.{BREAKDOWN_TABLE})."}
        rows = d.breakdown.get(group)
        if not rows:
            return {"absent": f"No lead-time breakdown for {visible(group)} in these weeks."}
        stages, gap = self._stage_series(rows, weekly)
        total = series(rows, self.weeks, "median_lead_time_hours", reason=lambda _c, _r: None)
        title = f"Lead-time breakdown, {chart_label(short_ref(group))}"
        chart = self.charts.stages(self.weeks, stages, total, gap, title,
                                   describe_stages(visible(group), stages, gap), partial_last=self.partial_last)
        return {"absent": None, "chart": chart, "caption": gap_caption(gap)}

    def _stage_series(self, rows: Mapping[date, Mapping], weekly: Mapping[date, Mapping]):
        """One series per stage, and the weeks without any stage value with the reason why."""
        gap = Series(list(self.weeks), [], [], [])
        for week in self.weeks:
            row = rows.get(week)
            has = row is not None and any(row.get(c) is not None for c in self.data.stage_columns)
            gap.values.append(None)
            gap.tiers.append(None)
            gap.reasons.append(None if has else (missing_reason("median_lead_time_hours", weekly.get(week))
                                                 or "no breakdown published"))
        stages = [(_STAGE_RE.match(c).group(1), series(rows, self.weeks, c, reason=lambda _c, _r: None))
                  for c in self.data.stage_columns]
        return stages, gap

    def survey(self, group: str) -> dict:
        if self.data.survey is None:
            return {"absent": "Survey results: not published yet."}
        rows = sorted((r for r in self.data.survey if r.get("group_ref") == group),
                      key=lambda r: (r.get("period_start") or datetime.min.replace(tzinfo=UTC),
                                     str(r.get("survey_id"))), reverse=True)[:SURVEYS_SHOWN]
        if not rows:
            return {"absent": f"No survey results for {visible(group)}."}
        scores = [c for c in self.data.columns["team_space_survey"] if c.endswith("_mean")]
        k = self.options.survey_min_respondents
        out = []
        for row in rows:
            suppressed = None
            if row.get("suppressed"):
                suppressed = (f"would let a smaller group's answers be worked out (k = {k})"
                              if row.get("suppression_reason") == "complementary" else f"fewer than {k} respondents")
            rate = row.get("response_rate_pct")
            out.append({
                "survey_id": row.get("survey_id"),
                "period": f"{_fmt_day(row.get('period_start'))} – {_fmt_day(row.get('period_end'))}",
                "eligible": row.get("eligible_members", "–"),
                "respondents": row.get("respondents", "–"),
                "rate": number(rate) + " %" if rate is not None else "–",
                "suppressed": suppressed, "colspan": max(len(scores), 1),
                "scores": [_score(row, c) for c in scores],
            })
        return {"absent": None, "rows": out,
                "scores": [c.removesuffix("_mean").replace("_", " ") for c in scores]}

    def activity(self, group: str) -> dict:
        if self.data.activity is None:
            return {"absent": "Weekly activity: not published yet."}
        rows = self.data.activity.get(group)
        if not rows:
            return {"absent": f"No activity for {visible(group)} in these weeks."}
        merged = (series(rows, self.weeks, "merged_prs", reason=activity_reason)
                  if "merged_prs" in self.data.activity_columns else None)
        hours = [(_STAGE_RE.match(c).group(1), series(rows, self.weeks, c, reason=activity_reason))
                 for c in self.data.activity_columns if _STAGE_RE.match(c)]
        title = f"Pull request activity, {chart_label(short_ref(group))}"
        desc = [f"Weekly pull request activity of {visible(group)}, {len(self.weeks)} weeks."]
        if merged:
            desc.append("Merged pull requests per week: "
                        + ", ".join(number(v) if v is not None else "no data" for v in merged.values) + ".")
        for name, data in hours:
            desc.append(f"Median {stage_label(name)} hours: latest {number(_latest(data))}"
                        + "".join(f"; {_weeks(n)} {r}" for r, n in _reason_counts(data).items()) + ".")
        if self.partial_last:
            desc.append("The last week is partial.")
        chart = self.charts.activity(self.weeks, merged, hours, title, " ".join(desc), self.partial_last)
        return {"absent": None, "chart": chart, "caption": gap_caption(hours[0][1]) if hours else ""}

    def candidates(self, group: str) -> dict:
        if self.data.candidates is None:
            return {"absent": "Improvement candidates: not published yet."}
        order = {"high": 0, "medium": 1, "low": 2}
        rows = sorted((r for r in self.data.candidates if r.get("group_ref") == group),
                      key=lambda r: (order.get(str(r.get("severity")).lower(), 3), str(r.get("metric")),
                                     str(r.get("entity_ref"))))
        if not rows:
            return {"absent": f"No improvement candidates for {visible(group)}."}
        items = []
        for row in rows:
            metric = METRIC_BY_COLUMN.get(str(row.get("metric")))
            items.append({
                "severity": row.get("severity"), "severity_slug": slug(str(row.get("severity"))),
                "what": metric.title if metric else str(row.get("metric") or "").replace("_", " "),
                "entity_ref": row.get("entity_ref"), "rule": row.get("rule"),
                "finding": row.get("finding"), "suggestion": row.get("suggestion"),
                "evidence": evidence(row.get("evidence")),
            })
        return {"absent": None, "entries": items}

    def services(self, title: str, refs: list[str]) -> dict:
        d = self.data
        rows = [(ref, d.service_weeks.get(ref, {})) for ref in refs]
        desc = [f"Small multiples: one row per service ({len(refs)}), one column per DORA metric, weekly over "
                f"{len(self.weeks)} weeks, tier bands behind the lines."]
        for ref, weekly in rows:
            bits = []
            for metric in METRICS:
                s = series(weekly, self.weeks, metric.column, metric.tier_column)
                gaps = ", ".join(f"{_weeks(n)} {r}" for r, n in _reason_counts(s).items())
                bits.append(f"{metric.short} latest {number(_latest(s))}" + (f" ({gaps})" if gaps else ""))
            desc.append(f"{visible(short_ref(ref))}: " + "; ".join(bits) + ".")
        chart = self.charts.small_multiples(rows, self.weeks, d.bands, self.partial_last, chart_label(title, 80),
                                            " ".join(desc))
        return {"title": title, "chart": chart,
                "rows": [{"ref": ref, "deployments": d.services[ref].get("deployments"),
                          "cells": [metric_cell(m, d.services[ref]) for m in METRICS]} for ref in refs]}

    def quality(self) -> dict:
        rows = self.data.data_quality
        if not rows:
            return {"rows": []}
        cols = [c for c in ("source", "check_name", "entity_ref", "value", "detail", "last_extracted_at")
                if c in rows[0]]
        return {
            "columns": [c.replace("_", " ") for c in cols],
            "rows": [[{"text": _fmt_date(r[c]) if isinstance(r[c], datetime) else ("" if r[c] is None else r[c]),
                       "num": c == "value", "name": c == "entity_ref" and r[c] is not None}
                      for c in cols] for r in rows],
        }


def activity_reason(column: str, row: Mapping[str, Any] | None) -> str:
    """Why a week of team_space_activity_weekly has no value in ``column``."""
    if row is None:
        return "no activity yet"
    if not row.get("merged_prs"):
        return "no merged PRs"
    if row.get("suppressed"):
        return "suppressed (fewer than DORA_ACTIVITY_MIN_AUTHORS authors)"
    if "review" in column and not row.get("reviewed_prs", 1):
        return "no reviewed PRs"
    return "no data"


def _score(row: Mapping[str, Any], column: str) -> dict:
    value = row.get(column)
    if value is None:
        return {"value": "–", "change": None}
    change = row.get(column.removesuffix("_mean") + "_change")
    return {"value": number(value), "change": f"{float(change):+.2f}" if change is not None else None}


def _fmt_day(moment: date | datetime | None) -> str:
    if moment is None:
        return "–"
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC).date()
    return moment.isoformat()


def _weeks(n: int) -> str:
    return f"{n} week" if n == 1 else f"{n} weeks"


def _latest(data: Series) -> float | None:
    return next((v for v in reversed(data.values) if v is not None), None)


def _reason_counts(data: Series) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason in data.reasons:
        if reason:
            out[reason] = out.get(reason, 0) + 1
    return out


def gap_caption(data: Series) -> str:
    runs = data.gap_runs()
    if not runs:
        return "No gaps: a value every week."
    parts = []
    for first, last, reason in runs:
        span = data.weeks[first].strftime("%d %b") + (
            f"–{data.weeks[last].strftime('%d %b')}" if last > first else "")
        parts.append(f"{span}: {reason}")
    return "Gaps (no value, not zero): " + "; ".join(parts) + "."


def describe_series(what: str, metric: Metric, data: Series, bands: Sequence[Band], partial_last: bool) -> str:
    """A chart's text alternative: span, latest value and tier, range, gaps and their reasons."""
    if not data.weeks:
        return f"{what}: no weeks to show."
    present = [(w, v, t) for w, v, t in zip(data.weeks, data.values, data.tiers, strict=True) if v is not None]
    out = [f"{what}, in {metric.unit}, {len(data.weeks)} weeks from {data.weeks[0]:%d %b %Y} "
           f"to {data.weeks[-1]:%d %b %Y}."]
    if present:
        week, value, tier = present[-1]
        out.append(f"Latest value (week of {week:%d %b}): {number(value)}" + (f", tier {tier}" if tier else "") + ".")
        values = [v for _, v, _ in present]
        out.append(f"Range {number(min(values))} to {number(max(values))}; median of the weekly values "
                   f"{number(sorted(values)[len(values) // 2])}.")
        tiers = {}
        for _, _, t in present:
            if t:
                tiers[t] = tiers.get(t, 0) + 1
        if tiers:
            out.append("Weeks per tier: " + ", ".join(f"{tiers[t]} {t}" for t in TIERS if t in tiers) + ".")
    else:
        out.append("No value in any week.")
    gaps = _reason_counts(data)
    if gaps:
        out.append("Gaps: " + ", ".join(f"{_weeks(n)} {r}" for r, n in gaps.items()) + ".")
    if partial_last:
        out.append("The last week is partial.")
    if bands:
        out.append("Tier bands: " + "; ".join(f"{b.tier} {b.text()}" for b in bands) + ".")
    return " ".join(out)


def describe_stages(ref: str, stages: Sequence[tuple[str, Series]], gap: Series) -> str:
    out = [f"Weekly median hours per lead-time stage of {ref}, {len(gap.weeks)} weeks."]
    for name, data in stages:
        out.append(f"{stage_label(name)}: latest {number(_latest(data))} h.")
    gaps = _reason_counts(gap)
    if gaps:
        out.append("Gaps: " + ", ".join(f"{_weeks(n)} {r}" for r, n in gaps.items()) + ".")
    return " ".join(out)


def evidence(value: Any) -> dict | None:
    """A candidate's evidence (jsonb) for the template: named values, a list of records as
    a table, anything else as one value; every piece as plain text."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"pairs": None, "value": {"kind": "text", "text": visible(value)}}
    if isinstance(value, dict):
        return {"pairs": [(visible(str(k).replace("_", " ")), _evidence_value(v)) for k, v in value.items()]}
    return {"pairs": None, "value": _evidence_value(value)}


def _evidence_value(value: Any) -> dict:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return {"kind": "table", "heads": [visible(str(k).replace("_", " ")) for k in keys],
                "rows": [[visible(_scalar(v.get(k))) for k in keys] for v in value]}
    if isinstance(value, (list, dict)):
        return {"kind": "json", "text": visible(json.dumps(value, default=str, ensure_ascii=False))}
    return {"kind": "text", "text": visible(_scalar(value))}


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return number(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return "–" if value is None else str(value)


KNOWN_GROUPS_SHOWN = 20  # an unknown --team lists at most this many known groups


def render_html(data: Published, options: ReportOptions) -> str:
    if options.team and options.team not in data.groups:
        known = sorted(data.groups)
        listed = ", ".join(terminal(g) for g in known[:KNOWN_GROUPS_SHOWN]) or "none"
        more = f" and {len(known) - KNOWN_GROUPS_SHOWN} more" if len(known) > KNOWN_GROUPS_SHOWN else ""
        raise ConfigError(f"--team {terminal(options.team)}: no such group in {PUBLISHED_SCHEMA}.team_metrics "
                          f"(known: {listed}{more})")
    return _Page(data, options).render()


@dataclass(frozen=True)
class ReportResult:
    path: Path
    bytes: int
    groups: int
    charts: int
    as_of: datetime | None
    reader: str


def normalise_team(team: str | None) -> str | None:
    """``team-a``, ``group:team-a`` and ``group:default/team-a`` all name the same group."""
    if not team:
        return None
    ref = team.strip().lower()
    if not ref.startswith("group:"):
        ref = "group:" + ref
    kind, name = ref.split(":", 1)
    return f"{kind}:{name if '/' in name else 'default/' + name}"


def write_report(settings: Settings, out: Path, team: str | None = None, weeks: int = DEFAULT_WEEKS,
                 warehouse: Warehouse | None = None) -> ReportResult:
    """Read dora_metrics and write the HTML report to ``out``."""
    if weeks < 1:
        raise ConfigError(f"--weeks must be at least 1, got {weeks}")
    options = ReportOptions(normalise_team(team), weeks, settings.survey_min_respondents)
    warehouse = warehouse or Warehouse(settings)
    with reader_connection(settings, warehouse) as conn:
        log.info("report: reading %s at %s as %s", PUBLISHED_SCHEMA, redact_url(warehouse.url),
                 settings.reader_role if settings.reader_password else "the warehouse user")
        data = load_published(conn, weeks)
    page = render_html(data, options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    groups = page.count('class="team ')
    return ReportResult(out, len(page.encode()), groups, page.count("<svg "), data.as_of, data.reader)

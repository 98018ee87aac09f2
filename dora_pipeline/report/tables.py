"""Readable terminal tables of the published metrics (what ``demo`` prints).

Every cell goes through ``text.terminal``: refs, survey ids and findings are data from
catalogs and exports, so their control and bidi characters are shown, never obeyed, and
a long value is shortened rather than stretching the table.
"""

from __future__ import annotations

import psycopg

from ..text import display_width, pad, terminal

CELL_WIDTH = 60  # a longer value ends in an ellipsis
LINE_WIDTH = 300  # a finding or suggestion line

_COLUMNS = (
    ("deploys/day", "deploys_per_day", "deployment_frequency_tier"),
    ("lead time h", "median_lead_time_hours", "lead_time_tier"),
    ("CFR %", "change_failure_rate_pct", "change_failure_tier"),
    ("restore min", "median_time_to_restore_minutes", "time_to_restore_tier"),
    ("recovery min", "median_failed_deployment_recovery_minutes", "failed_deployment_recovery_tier"),
    ("rework %", "rework_rate_pct", None),  # DORA publishes no rework tiers
)


def _cell(value, tier) -> str:
    if value is None:
        return "-"
    number = f"{float(value):.2f}" if abs(float(value)) < 1000 else f"{float(value):.0f}"
    return f"{number} {tier}" if tier else number


def _table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[terminal(c, CELL_WIDTH) for c in r] for r in [header, *rows]]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [
        title,
        "  ".join(pad(h, w) for h, w in zip(cells[0], widths, strict=True)).rstrip(),
        line,
    ]
    out += [
        "  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells[1:]
    ]
    return "\n".join(out)


def print_tables(conn: psycopg.Connection, window_days: int = 30, out=print) -> None:
    select = ", ".join(f"{v}, {t or 'null'}" for _, v, t in _COLUMNS)
    teams = conn.execute(
        f"select group_ref, deployments, {select} from dora_metrics.team_metrics "
        "where window_days = %s order by group_ref",
        (window_days,),
    ).fetchall()
    services = conn.execute(
        f"select entity_ref, coalesce(owner_ref, '(not in catalog)'), deployments, {select} "
        "from dora_metrics.service_metrics where window_days = %s order by owner_ref nulls last, entity_ref",
        (window_days,),
    ).fetchall()
    header = [label for label, _, _ in _COLUMNS]

    def cells(row, offset):
        return [_cell(row[offset + 2 * i], row[offset + 2 * i + 1]) for i in range(len(_COLUMNS))]

    out("")
    out(
        _table(
            f"Teams, last {window_days} days (pooled over the services each group owns)",
            ["group", "deploys", *header],
            [[r[0], r[1], *cells(r, 2)] for r in teams],
        )
    )
    out("")
    out(
        _table(
            f"Services, last {window_days} days",
            ["component", "owner", "deploys", *header],
            [[r[0], r[1], r[2], *cells(r, 3)] for r in services],
        )
    )
    out("")
    _print_space(conn, out)


_SUPPRESSED = {
    "fewer_than_k": "suppressed (fewer than k respondents)",
    "complementary": "suppressed (would reveal a smaller team)",
}


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"dora_metrics.{name}",)).fetchone()[
        0
    ]


def _print_space(conn: psycopg.Connection, out) -> None:
    """The latest survey per group and the improvement candidates, when published."""
    if _table_exists(conn, "team_space_survey"):
        rows = conn.execute(
            """
            select distinct on (group_ref) group_ref, survey_id, respondents, eligible_members,
                   response_rate_pct, satisfaction_mean, flow_state_mean, suppressed, suppression_reason
            from dora_metrics.team_space_survey
            order by group_ref, period_end desc, survey_id desc
            """
        ).fetchall()
        body = [
            [
                r[0],
                r[1],
                f"{r[2]}/{r[3]}",
                "-" if r[4] is None else f"{float(r[4]):.0f} %",
                _SUPPRESSED.get(r[8], "suppressed") if r[7] else f"{float(r[5]):.2f}",
                "" if r[7] else f"{float(r[6]):.2f}",
            ]
            for r in rows
        ]
        out(
            _table(
                "Latest survey per group (SPACE; scores 1-5)",
                ["group", "survey", "answered", "response", "satisfaction", "flow"],
                body,
            )
        )
        out("")
    if _table_exists(conn, "improvement_candidates"):
        rows = conn.execute(
            """
            select coalesce(group_ref, '-'), coalesce(entity_ref, group_ref), severity, finding, suggestion
            from dora_metrics.improvement_candidates
            order by 1, 2, severity
            """
        ).fetchall()
        out("Improvement candidates (each compares a service or team with its own recent history)")
        for group_ref, subject, severity, finding, suggestion in rows:
            out(terminal(f"- [{severity}] {subject} ({group_ref}): {finding}", LINE_WIDTH))
            out(terminal(f"    try: {suggestion}", LINE_WIDTH))
        if not rows:
            out("- none: no rule fired")
        out("")

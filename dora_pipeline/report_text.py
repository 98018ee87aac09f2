"""Readable terminal tables of the published metrics (what ``demo`` prints)."""

from __future__ import annotations

import psycopg

_COLUMNS = (
    ("deploys/day", "deploys_per_day", "deployment_frequency_tier"),
    ("lead time h", "median_lead_time_hours", "lead_time_tier"),
    ("CFR %", "change_failure_rate_pct", "change_failure_tier"),
    ("restore min", "median_time_to_restore_minutes", "time_to_restore_tier"),
)


def _cell(value, tier) -> str:
    if value is None:
        return "-"
    number = f"{float(value):.2f}" if abs(float(value)) < 1000 else f"{float(value):.0f}"
    return f"{number} {tier}" if tier else number


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def print_tables(conn: psycopg.Connection, window_days: int = 30, out=print) -> None:
    select = ", ".join(f"{v}, {t}" for _, v, t in _COLUMNS)
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
    out(_table(f"Teams, last {window_days} days (pooled over the services each group owns)",
               ["group", "deploys", *header], [[r[0], r[1], *cells(r, 2)] for r in teams]))
    out("")
    out(_table(f"Services, last {window_days} days",
               ["component", "owner", "deploys", *header], [[r[0], r[1], r[2], *cells(r, 3)] for r in services]))
    out("")

"""The performance benchmark (docs/performance.md): ``python bench/run.py --size small``.

Loads a deterministic synthetic year through the real ``dora-pipeline run`` (one
partition per UTC day), then measures, in one run so the ratios compare like with like:

1. load: rows/s of the loader vs a raw COPY FROM STDIN of the same rows;
2. model build + publish vs the tutorial's four 30-day queries on the same events;
3. a nightly run: one new day on top of the year;
4. peak RSS of the whole ``dora-pipeline run`` of the year;
5. GitHub API efficiency against a local fake GitHub with a fixed latency;
6. model build time as the organisation grows;
plus the tutorial's lead time and CFR next to ours and what its rules mis-attribute.

Sizes: tiny (24 services, 60 days: a smoke test), small (100 services), medium (300),
large (1,000 services over 365 days: ~730,000 production deploys, ~1.5 million PRs).
Databases are kept on the bench server; ``--reuse`` skips loading a year that is
already there (the memory figure then comes from no new run and is left out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api  # noqa: E402
import baseline  # noqa: E402
import load  # noqa: E402
from common import (  # noqa: E402
    END,
    ROOT,
    SIZES,
    Server,
    Size,
    as_of,
    history_loaded,
    raw_counts,
    run_pipeline_child,
    synthetic_env,
    timed,
    warehouse,
    with_dbname,
)

from dora_pipeline.models import load_models  # noqa: E402
from dora_pipeline.pipeline import build_and_publish, extract_partition  # noqa: E402
from dora_pipeline.pipeline import run as pipeline_run  # noqa: E402
from dora_pipeline.sources import get_source  # noqa: E402

FIGURES = ("load", "models", "nightly", "memory", "api", "scaling")


def _db_name(services: int, teams: int, days: int) -> str:
    return f"bench_s{services}_t{teams}_d{days}"


def _teams_for(services: int) -> int:
    return max(2, services // 10)


def ensure_history(server: Server, services: int, teams: int, days: int, reuse: bool) -> tuple[str, dict | None]:
    """The database holding the synthetic year, loaded by a child ``dora-pipeline run``
    unless ``reuse`` finds it complete. Returns its URL and the child run's figures."""
    name = _db_name(services, teams, days)
    url = with_dbname(server.admin_url, name)
    start = END - timedelta(days=days - 1)
    if reuse and history_loaded(url, start, END):
        _say(f"reusing {name}")
        # Loaded by an older tree, maybe: bring it to this tree's migrations.
        warehouse(url, services, teams, days).migrate()
        return url, None
    url = server.database(name, fresh=True)
    _say(f"loading {days} days of {services} services ({teams} teams) into {name} with dora-pipeline run ...")
    child = run_pipeline_child(synthetic_env(url, services, teams, days, END), start, END)
    _say(f"  {child.seconds:.0f}s, peak RSS {child.max_rss_mib:.0f} MiB")
    return url, child.__dict__


def build_models(url: str, services: int, teams: int, days: int) -> dict:
    wh = warehouse(url, services, teams, days)
    per_model: dict[str, float] = {}
    ends: list[float] = []

    def on_model(model, rows, seconds):
        per_model[model.qualified] = seconds
        ends.append(time.perf_counter())

    # A full rebuild (the year's state may already be there): what figure 2 compares.
    started = time.perf_counter()
    seconds, (rows, published) = timed(build_and_publish, wh, as_of(), on_model=on_model, full_refresh=True)
    ordered = dict(sorted(per_model.items(), key=lambda kv: -kv[1]))
    return {
        "seconds": seconds,
        # Models build DORA_MODEL_THREADS at once: a model's seconds are its own wall
        # time, shared with the others; they add up to more than the build took.
        "threads": wh.settings.model_threads,
        "models": len(per_model),
        "published_tables": len(published),
        "published_rows": sum(published.values()),
        "slowest_models": dict(list(ordered.items())[:10]),
        "model_seconds": ordered,
        "publish_seconds": started + seconds - max(ends),
    }


def figure_models(url: str, size: Size, production_regex: str, window_hours: int) -> dict:
    _say("figure 2: model build + publish ...")
    ours = build_models(url, size.services, size.teams, size.days)
    _say(f"  ours {ours['seconds']:.1f}s; tutorial baseline ...")
    with psycopg.connect(url) as conn:
        load_seconds = baseline.load_tutorial_schema(conn, production_regex)
        query_seconds, results = baseline.run_tutorial_queries(conn, as_of())
        correctness = baseline.compare(conn, as_of(), results, window_hours)
    total = sum(query_seconds.values())
    _say(f"  baseline {total:.1f}s")
    return {
        "ours": ours,
        "baseline": {"seconds": total, "queries": query_seconds, "schema_load_seconds": load_seconds["load"]},
        "ratio_ours_to_baseline": ours["seconds"] / total,
        "correctness": correctness,
    }


def figure_nightly(server: Server, size: Size) -> dict:
    """One new day (END + 1) on a copy of the year, through the pipeline's run; and the
    same day into an empty warehouse, to show the extract does not grow with history."""
    _say("figure 3: nightly run ...")
    source_name = _db_name(size.services, size.teams, size.days)
    clone = f"{source_name}_nightly"
    # The year's models must be built before the night is added: a server that was killed
    # (not shut down) empties the UNLOGGED build tables on restart, and the engine rebuilds
    # an emptied incremental model in full, which would be measured as the night's cost.
    catch_up_seconds, _ = timed(
        build_and_publish, warehouse(with_dbname(server.admin_url, source_name), size.services, size.teams, size.days),
        as_of(),
    )
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{clone}" with (force)')
        started = time.perf_counter()
        conn.execute(f'create database "{clone}" template "{source_name}"')
        clone_seconds = time.perf_counter() - started
    day = END + timedelta(days=1)
    nightly_url = with_dbname(server.admin_url, clone)
    wh = warehouse(nightly_url, size.services, size.teams, size.days + 1, end=day)
    per_model: dict[str, float] = {}

    def on_model(model, rows, seconds):
        per_model[model.qualified] = seconds

    started = time.perf_counter()
    result = pipeline_run(wh, day, day, sources=[get_source("synthetic")], on_model=on_model)
    total = time.perf_counter() - started
    with psycopg.connect(nightly_url) as conn:
        # Which incremental models built a slice (dirty_since set) and which were rebuilt in full.
        incremental = {m.qualified for m in load_models().ordered() if m.incremental}
        state = dict(conn.execute("select model, dirty_since from dora_lib.model_state").fetchall())
    sliced = sorted(m for m in incremental if state.get(m) is not None)
    empty_url = server.database(f"{clone}_empty", fresh=True)
    empty = warehouse(empty_url, size.services, size.teams, size.days + 1, end=day)
    empty.migrate()
    empty_seconds, _ = timed(extract_partition, empty, get_source("synthetic"), day)
    # The whole run of that one day (extract, every model, publish) into an empty warehouse:
    # what an incremental nightly run is compared with.
    empty_run_seconds, _ = timed(pipeline_run, empty, day, day, sources=[get_source("synthetic")])
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{clone}" with (force)')
        conn.execute(f'drop database if exists "{clone}_empty" with (force)')
    rows = sum(load.total_rows for load in result.loads)
    return {
        "day": day.isoformat(),
        "rows_loaded": rows,
        "extract_load_seconds": result.seconds["extract"],
        "model_seconds": result.seconds["models"],
        "total_seconds": total,
        "same_day_into_empty_warehouse_seconds": empty_seconds,
        "same_day_run_into_empty_warehouse_seconds": empty_run_seconds,
        "clone_seconds": clone_seconds,
        "catch_up_build_seconds": catch_up_seconds,
        "incremental_models": len(incremental),
        "built_as_slices": len(sliced),
        "rebuilt_in_full": sorted(incremental - set(sliced)),
        # Which models a nightly run still spends its time in (incremental ones build a slice).
        "per_model_seconds": dict(sorted(per_model.items(), key=lambda kv: -kv[1])),
    }


def figure_scaling(server: Server, size: Size, reuse: bool, main: tuple[str, dict]) -> dict:
    _say("figure 6: scaling ...")
    out = {}
    for services in size.scaling:
        teams = _teams_for(services)
        if services == size.services and teams == size.teams:
            url = main[0]
        else:
            url, _ = ensure_history(server, services, teams, size.days, reuse)
        built = build_models(url, services, teams, size.days)
        counts = raw_counts(url)
        out[str(services)] = {
            "teams": teams,
            "model_seconds": built["seconds"],
            "production_deploys": counts["production deploys"],
            "merged_prs": counts["merged PRs"],
        }
        _say(f"  {services} services: {built['seconds']:.1f}s")
    return out


def _say(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(results: dict) -> str:
    """The results as the Markdown table docs/performance.md shows."""
    env = results["environment"]
    lines = [
        f"size **{results['size']}** ({results['services']} services, {results['teams']} teams, "
        f"{results['days']} days); {env['cores']} cores, PostgreSQL {env['postgres']}, "
        f"{env['date']}, commit {env['commit']}",
        "",
        "| figure | measured | reference | ratio | target |",
        "|---|---|---|---|---|",
    ]
    f = results["figures"]
    if "load" in f:
        x = f["load"]
        lines.append(
            f"| 1. load ({x['rows']:,} rows, {x['days']} daily partitions) | loader "
            f"{x['rows_per_s']['loader']:,.0f} rows/s | COPY text {x['rows_per_s']['copy_text']:,.0f} rows/s "
            f"(binary {x['rows_per_s']['copy_binary']:,.0f}) | {x['ratio_vs_copy_text']:.2f} "
            f"(vs binary {x['ratio_vs_copy_binary']:.2f}) | >= 0.6: {_met(x['ratio_vs_copy_text'] >= 0.6)} |"
        )
    if "models" in f:
        x = f["models"]
        lines.append(
            f"| 2. full model build + publish ({x['ours']['models']} models, {x['ours'].get('threads', 1)} at "
            f"once; {x['ours']['published_tables']} tables, {x['ours']['published_rows']:,} rows) | {x['ours']['seconds']:.1f} s | tutorial's "
            f"four 30-day queries {x['baseline']['seconds']:.1f} s | {x['ratio_ours_to_baseline']:.3f} "
            f"| <= 0.2 (aim 0.1): {_met(x['ratio_ours_to_baseline'] <= 0.2)} |"
        )
    if "nightly" in f:
        x = f["nightly"]
        lines.append(
            f"| 3. nightly run (+1 day, {x['rows_loaded']:,} rows; {x.get('built_as_slices', '?')} of "
            f"{x.get('incremental_models', '?')} incremental models built a slice) | extract+load "
            f"{x['extract_load_seconds']:.1f} s, models + publish {x['model_seconds']:.1f} s, total "
            f"{x['total_seconds']:.1f} s | the same day's run into an empty warehouse "
            f"{x['same_day_run_into_empty_warehouse_seconds']:.1f} s (its extract+load "
            f"{x['same_day_into_empty_warehouse_seconds']:.1f} s) | "
            f"{x['total_seconds'] / x['same_day_run_into_empty_warehouse_seconds']:.2f} | models + publish "
            f"<= 10 s: {_met(x['model_seconds'] <= 10)}; ratio <= 3: "
            f"{_met(x['total_seconds'] <= 3 * x['same_day_run_into_empty_warehouse_seconds'])} |"
        )
    if "memory" in f:
        x = f["memory"]
        lines.append(
            f"| 4. peak RSS of `dora-pipeline run` ({results['days']} days) | {x['max_rss_mib']:.0f} MiB "
            f"| {x['seconds']:.0f} s wall | - | <= 1024 MiB: {_met(x['max_rss_mib'] <= 1024)} |"
        )
    if "api" in f and "skipped" not in f["api"]:
        x = f["api"]
        lines.append(
            f"| 5. GitHub API ({x['prs']:,} PRs, {x['latency_ms']} ms latency) | "
            f"{x['requests_per_100_prs']:.2f} requests/100 PRs; {x['prs_per_s_concurrent']:,.0f} PRs/s "
            f"(concurrency {x['concurrency']}) | {x['prs_per_s_serial']:,.0f} PRs/s one at a time | "
            f"{x['speedup']:.2f}x | <= 1.1 requests/100 PRs: {_met(x['requests_per_100_prs'] <= 1.1)} |"
        )
    if "scaling" in f:
        parts = ", ".join(f"{k}: {v['model_seconds']:.1f} s" for k, v in f["scaling"].items())
        lines.append(f"| 6. model build by services | {parts} | - | - | visible growth |")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--only", action="append", choices=FIGURES, help="only these figures (repeatable)")
    parser.add_argument("--reuse", action="store_true", help="reuse a year already loaded on the bench server")
    parser.add_argument("--api-latency-ms", type=float, default=50.0)
    parser.add_argument("--json", type=Path, help="write the results here (default bench/results/<size>.json)")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    wanted = set(args.only or FIGURES)
    server = Server()
    env = server.describe()
    results = {
        "size": size.name,
        "services": size.services,
        "teams": size.teams,
        "days": size.days,
        "environment": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "commit": _git_commit(),
            **env,
        },
        "figures": {},
    }
    figures = results["figures"]
    settings_probe = warehouse("", size.services, size.teams, size.days).settings
    if wanted & {"models", "nightly", "memory", "scaling"}:
        main_url, child = ensure_history(server, size.services, size.teams, size.days, args.reuse)
        results["volumes"] = raw_counts(main_url)
        if child and "memory" in wanted:
            figures["memory"] = child
        if "models" in wanted:
            figures["models"] = figure_models(
                main_url, size, settings_probe.production_environments, settings_probe.incident_window_hours
            )
        if "scaling" in wanted:
            figures["scaling"] = figure_scaling(server, size, args.reuse, (main_url, child))
        if "nightly" in wanted:
            figures["nightly"] = figure_nightly(server, size)
    if "load" in wanted:
        _say("figure 1: load ...")
        figures["load"] = load.measure(server, size)
    if "api" in wanted:
        _say("figure 5: GitHub API ...")
        figures["api"] = api.measure(size, args.api_latency_ms)
    out = args.json or ROOT / "bench" / "results" / f"{size.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(report(results))
    if "volumes" in results:
        print("\nvolumes: " + ", ".join(f"{k} {v:,}" for k, v in results["volumes"].items()))
    if "models" in figures:
        print("\ncorrectness (30-day window):")
        print(json.dumps(figures["models"]["correctness"], indent=2, default=str))
        print("\nslowest models (s):")
        for name, seconds in figures["models"]["ours"]["slowest_models"].items():
            print(f"  {seconds:7.2f}  {name}")
        print("tutorial queries (s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in figures["models"]["baseline"]["queries"].items()))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figure 5: GitHub API efficiency against a local fake GitHub (bench/fake_github.py).

The GitHub source extracts the last days of the synthetic organisation from the fake,
which holds its merged PRs and answers every request after a fixed latency: requests
per 100 PRs, and PRs/s with the source's concurrency setting vs one request at a time.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from common import END, SEED, Size
from fake_github import FakeGitHub

from dora_pipeline.config import Settings
from dora_pipeline.demo.organisation import ORG, Organisation
from dora_pipeline.records import PullRequest
from dora_pipeline.sources import github
from dora_pipeline.sources.base import ExtractContext

DAYS = 7


def _extract(fake: FakeGitHub, concurrency: int, days: list) -> dict:
    settings = Settings.from_env(
        {"GITHUB_TOKEN": "bench-token", "GITHUB_ORGS": ORG, "GITHUB_API_URL": fake.url}
    )
    # no warehouse, so no catalog: no repository is split into folders, no file lists
    ctx = ExtractContext(settings=settings, warehouse_url="", log=logging.getLogger("bench.github"))
    source = github.GitHubSource(concurrency=concurrency)
    fake.requests.clear()
    prs = 0
    started = time.perf_counter()
    for day in days:
        prs += sum(isinstance(r, PullRequest) for r in source.extract(day, ctx))
    seconds = time.perf_counter() - started
    return {"prs": prs, "seconds": seconds, "requests": dict(fake.requests)}


def measure(size: Size, latency_ms: float) -> dict:
    org = Organisation(SEED, size.teams, size.services, END, size.days)
    days = [END - timedelta(days=i) for i in range(DAYS - 1, -1, -1)]
    concurrency = github.SOURCE.concurrency
    with FakeGitHub(org, latency_ms / 1000) as fake:
        expected = sum(fake.warm(day) for day in days)
        serial = _extract(fake, 1, days)
        concurrent = _extract(fake, concurrency, days)
    if serial["prs"] != expected or concurrent["prs"] != expected:
        raise AssertionError(f"extracted {serial['prs']}/{concurrent['prs']} PRs, the fake holds {expected}")
    pr_requests = concurrent["requests"].get("graphql_search", 0) + concurrent["requests"].get("graphql_other", 0)
    return {
        "days": DAYS,
        "prs": expected,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
        "requests": concurrent["requests"],
        "requests_per_100_prs": 100 * pr_requests / expected,
        "requests_per_100_prs_incl_rest": 100 * sum(concurrent["requests"].values()) / expected,
        "prs_per_s_concurrent": expected / concurrent["seconds"],
        "prs_per_s_serial": expected / serial["seconds"],
        "speedup": serial["seconds"] / concurrent["seconds"],
    }

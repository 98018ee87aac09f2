"""Figure 5: GitHub API efficiency against a local fake GitHub (bench/fake_github.py)."""

from __future__ import annotations


def measure(size, latency_ms: float) -> dict:
    return {"skipped": "not written yet"}

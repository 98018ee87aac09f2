"""A local fake GitHub for the API-efficiency figure: the synthetic organisation's merged
pull requests behind GitHub's GraphQL ``search`` (the documented shape the GitHub
source reads), with a fixed artificial latency on every request.

It answers what ``dora_pipeline.sources.github`` sends on a GitHub Enterprise Server
style base URL (``<base>/api/graphql``, ``<base>/api/v3``):

- ``search(query: "is:pr is:merged merged:A..B sort:created-asc org:acme", type: ISSUE,
  first, after)``: ``issueCount`` is the true total, pages of at most ``first`` (≤ 100)
  nodes in creation order, and, as GitHub, never more than 1,000 results per query;
  ``created:>=T`` narrows a query to PRs created at or after ``T``;
- ``node(id:)`` review pages: empty (every synthetic PR carries its reviews inline);
- ``repositoryOwner(login:) { repositories }`` (and REST ``GET /api/v3/orgs/acme/repos``):
  the organisation's repositories, none with a GitHub deployment, so the figure is about
  pull-request traffic (deployments come from ArgoCD or the webhook in this organisation).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dora_pipeline.demo.organisation import ORG, Organisation, _prs_by_service

SEARCH_CAP = 1000
MERGED_RE = re.compile(r"merged:(\S+)\.\.(\S+)")
CREATED_RE = re.compile(r"\bcreated:>=(\S+)")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakeGitHub:
    """The server; ``url`` is the GITHUB_API_URL to configure."""

    def __init__(self, org: Organisation, latency_seconds: float) -> None:
        self.org = org
        self.latency = latency_seconds
        self.requests: Counter = Counter()
        self._lock = threading.Lock()
        self._nodes_by_day = lru_cache(maxsize=16)(self._day_nodes)
        self._merged_between = lru_cache(maxsize=256)(self.merged_between)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake._answer(self, *fake.graphql(body))

            def do_GET(self) -> None:
                fake._answer(self, *fake.rest(self.path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, status: int, payload: object) -> None:
        time.sleep(self.latency)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json; charset=utf-8")
        handler.send_header("content-length", str(len(data)))
        handler.send_header("x-ratelimit-remaining", "4999")
        handler.end_headers()
        handler.wfile.write(data)

    # -- REST ---------------------------------------------------------------------------

    def rest(self, path: str) -> tuple[int, object]:
        with self._lock:
            self.requests["rest"] += 1
        if path.split("?")[0].rstrip("/") == f"/api/v3/orgs/{ORG}/repos":
            return 200, [{"full_name": svc.repository} for svc in self.org.service_list][:100]
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    # -- GraphQL ------------------------------------------------------------------------

    def graphql(self, body: dict) -> tuple[int, object]:
        query = body.get("query") or ""
        variables = body.get("variables") or {}
        if "search(" in query:
            with self._lock:
                self.requests["graphql_search"] += 1
            return 200, {"data": {"search": self.search(variables)}}
        if "repositoryOwner(" in query:
            with self._lock:
                self.requests["graphql_repositories"] += 1
            return 200, {"data": {"repositoryOwner": self.repositories(variables)}}
        with self._lock:
            self.requests["graphql_other"] += 1
        if "node(" in query:
            empty = {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": []}
            return 200, {"data": {"node": {"reviews": empty}}}
        return 200, {"errors": [{"message": "unsupported query in the fake GitHub"}]}

    def search(self, variables: dict) -> dict:
        text = variables["searchQuery"]
        match = MERGED_RE.search(text)
        if not match or f"org:{ORG}" not in text:
            raise ValueError(f"unexpected search: {text!r}")
        first, last = _parse(match.group(1)), _parse(match.group(2))
        matching = self._merged_between(first, last)
        created = CREATED_RE.search(text)
        if created:  # ``created:>=T``: the next query of a day over the search cap
            created_from = _parse(created.group(1))
            matching = [n for n in matching if _parse(n["createdAt"]) >= created_from]
        offset = int(base64.b64decode(variables["after"]).decode()) if variables.get("after") else 0
        size = min(int(variables.get("pageSize") or 100), 100)
        reachable = min(len(matching), SEARCH_CAP)
        page = matching[offset : min(offset + size, reachable)]
        end = offset + len(page)
        return {
            "issueCount": len(matching),
            "pageInfo": {
                "hasNextPage": end < reachable,
                "endCursor": base64.b64encode(str(end).encode()).decode() if page else None,
            },
            "nodes": page,
        }

    def repositories(self, variables: dict) -> dict | None:
        """The organisation's repositories, 100 a page, none with a deployment."""
        if str(variables.get("login", "")).lower() != ORG:
            return None
        names = [svc.repository for svc in self.org.service_list]
        offset = int(base64.b64decode(variables["after"]).decode()) if variables.get("after") else 0
        page = names[offset : offset + 100]
        end = offset + len(page)
        return {
            "repositories": {
                "pageInfo": {
                    "hasNextPage": end < len(names),
                    "endCursor": base64.b64encode(str(end).encode()).decode() if page else None,
                },
                "nodes": [{"nameWithOwner": n, "deployments": {"nodes": []}} for n in page],
            }
        }

    def merged_between(self, first: datetime, last: datetime) -> list[dict]:
        """Nodes of PRs merged in [first, last] (whole seconds, inclusive), created-asc."""
        day, out = first.date(), []
        while day <= last.date():
            out.extend(n for n in self._nodes_by_day(day) if first <= n["_merged"] <= last)
            day += timedelta(days=1)
        out.sort(key=lambda n: (n["createdAt"], n["id"]))
        return [{k: v for k, v in n.items() if not k.startswith("_")} for n in out]

    def warm(self, day: date) -> int:
        """Generate a day's PRs before the clock starts; returns how many."""
        return len(self._nodes_by_day(day))

    def _day_nodes(self, day: date) -> list[dict]:
        if not self.org.start <= day <= self.org.end:
            return []
        nodes = []
        for prs in _prs_by_service(self.org, day):
            for _, pr in prs:
                merged = pr.merged_at.replace(microsecond=0)
                review = (
                    [{"author": {"login": pr.first_reviewer.split("/")[-1]}, "submittedAt": _iso(pr.first_review_at)}]
                    if pr.first_review_at
                    else []
                )
                nodes.append(
                    {
                        "_merged": merged,
                        "id": f"PR_{pr.repository}#{pr.number}",
                        "number": pr.number,
                        "title": pr.title,
                        "createdAt": _iso(pr.opened_at),
                        "mergedAt": _iso(merged),
                        "additions": pr.additions,
                        "deletions": pr.deletions,
                        "baseRefName": pr.base_branch,
                        "headRefOid": pr.head_sha,
                        "mergeCommit": {"oid": pr.merge_commit_sha},
                        "author": {"login": (pr.author or "ghost").split("/")[-1]},
                        "repository": {"nameWithOwner": pr.repository},
                        "commits": {"nodes": [{"commit": {"authoredDate": _iso(pr.first_commit_at)}}]},
                        "reviews": {"pageInfo": {"hasNextPage": False, "endCursor": None}, "nodes": review},
                    }
                )
        return nodes

"""A small GitHub for tests: GraphQL search, node and repository-owner queries, REST
deployments and deployment statuses, default-branch commit history, and a GitHub App's
endpoints (installations, installation tokens), answered in GitHub's documented shapes.

It behaves like GitHub where the source depends on it: search returns at most 1,000
results per query however many match (``issueCount`` says how many did), pages with
opaque cursors of at most 100 nodes, REST lists page with ``Link`` headers, newest
first. Faults (rate limits, 5xx, slow or truncated answers) are queued per path and
served before the real answer.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from werkzeug import Request, Response

SEARCH_CAP = 1000


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


@dataclass
class FakeReview:
    author: str | None
    submitted_at: datetime | None
    state: str = "APPROVED"


@dataclass
class FakePR:
    repo: str  # owner/name as GitHub spells it
    number: int
    created_at: datetime
    merged_at: datetime
    author: str | None = "alice"
    title: str = "Change"
    first_commit_at: datetime | None = None
    reviews: list[FakeReview] = field(default_factory=list)
    merge_sha: str | None = None
    head_sha: str = ""
    base: str = "main"
    additions: int = 10
    deletions: int = 2
    files: list[str] = field(default_factory=list)  # changed paths (GraphQL ``files``)

    @property
    def node_id(self) -> str:
        return base64.b64encode(f"PR:{self.repo}#{self.number}".encode()).decode()


@dataclass
class FakeDeployment:
    repo: str
    id: int
    sha: str
    environment: str
    created_at: datetime
    statuses: list[tuple[str, datetime]] = field(default_factory=list)  # (state, created_at)


@dataclass
class FakeCommit:
    """A commit on a repository's default branch; ``prs`` are its associated pull
    requests as GitHub lists them: (number, merged, merge commit oid or None)."""

    repo: str
    oid: str
    authored_at: datetime
    committed_at: datetime
    prs: list[tuple[int, bool, str | None]] = field(default_factory=list)


@dataclass
class FakeApp:
    """A GitHub App: its id, public key (to check JWT signatures), installations
    (id -> account login) and how long its installation tokens live. ``clock`` is the
    time the fake checks JWTs and tokens against (a test shares it with the source)."""

    app_id: int
    public_key: Any
    installations: dict[int, str] = field(default_factory=dict)
    suspended: set[int] = field(default_factory=set)
    token_lifetime: timedelta = timedelta(hours=1)
    clock: Callable[[], float] = time.time


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    base = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999"}
    return Response(
        json.dumps(body),
        status=status,
        headers={**base, **(headers or {})},
        content_type="application/json; charset=utf-8",
    )


# -- faults, as GitHub answers them ------------------------------------------------


def graphql_rate_limited(reset_in: int = 30) -> Callable[[], Response]:
    """Primary limit on GraphQL: HTTP 200, an error body, remaining 0, reset time."""

    def answer() -> Response:
        return _json(
            {
                "errors": [
                    {
                        "type": "RATE_LIMITED",
                        "code": "graphql_rate_limit",
                        "message": "API rate limit already exceeded for user ID 1.",
                    }
                ]
            },
            headers={
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(int(time.time()) + reset_in),
                "x-ratelimit-resource": "graphql",
            },
        )

    return answer


def primary_limit_403(reset_in: int = 20) -> Callable[[], Response]:
    """Primary limit on REST: 403, remaining 0, reset time."""

    def answer() -> Response:
        return _json(
            {
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            },
            status=403,
            headers={
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(time.time()) + reset_in),
            },
        )

    return answer


def secondary_limit(status: int = 403, retry_after: int | None = None) -> Callable[[], Response]:
    """Secondary limit: 403 or 429, with or without retry-after."""

    def answer() -> Response:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        return _json(
            {
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            },
            status=status,
            headers=headers,
        )

    return answer


def server_error(status: int = 502) -> Callable[[], Response]:
    return lambda: Response(
        "<html><body>Bad gateway</body></html>", status=status, content_type="text/html"
    )


def truncated_json() -> Callable[[], Response]:
    return lambda: Response(
        '{"data": {"search": {"issueCount": 3, "nodes": [{"id": "PR_',
        status=200,
        content_type="application/json",
    )


def slow(seconds: float) -> Callable[[], Response]:
    """Answers only after ``seconds``: longer than the client's timeout, a timeout."""

    def answer() -> Response:
        time.sleep(seconds)
        return _json({"late": True})

    return answer


def graphql_error(message: str) -> Callable[[], Response]:
    return lambda: _json({"data": None, "errors": [{"type": "NOT_FOUND", "message": message}]})


class FakeGitHub:
    """``rest_prefix`` and ``graphql_path``: ``/api/v3`` and ``/api/graphql`` for GitHub
    Enterprise Server at the server root; ``/x`` and ``/x/graphql`` for a github.com-style base."""

    def __init__(
        self, token: str, rest_prefix: str = "/api/v3", graphql_path: str = "/api/graphql"
    ) -> None:
        self.token = token
        self.rest_prefix = rest_prefix.rstrip("/")
        self.graphql_path = graphql_path
        self.orgs: dict[str, list[str]] = {}
        self.prs: list[FakePR] = []
        self.deployments: list[FakeDeployment] = []
        self.faults: list[list] = []  # [path part, requests to let through first, answer]
        self.graphql_documents: list[str] = []
        self.search_queries: list[str] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self.commits: list[FakeCommit] = []
        self.pushed_at: dict[str, datetime] = {}  # repo (lower) -> last push; else its last commit
        self.forks: set[str] = set()  # repos (lower) that are forks
        self.app: FakeApp | None = None
        # token -> (installation id, expiry in epoch seconds)
        self.installation_tokens: dict[str, tuple[int, float]] = {}
        self.app_jwt_claims: list[dict] = []  # claims of every valid JWT received
        self.refusals: list[str] = []  # "401 <reason>" for every credential refused

    def install(self, httpserver) -> None:
        httpserver.expect_request(re.compile(".*")).respond_with_handler(self.handle)

    def fail_next(self, path_part: str, *answers: Callable[[], Response], after: int = 0) -> None:
        """Serve ``answers`` (in order) to the next requests whose path contains
        ``path_part``, once ``after`` such requests have been answered normally."""
        with self._lock:
            self.faults.extend(
                [path_part, after if i == 0 else 0, answer] for i, answer in enumerate(answers)
            )

    @property
    def graphql_requests(self) -> int:
        return sum(1 for r in self.requests if r == f"POST {self.graphql_path}")

    # -- dispatch ---------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(f"{request.method} {request.path}")
            fault = next((f for f in self.faults if f[0] in request.path), None)
            if fault and fault[1] > 0:
                fault[1] -= 1
                fault = None
            elif fault:
                self.faults.remove(fault)
        if self.app is not None and self._app_endpoint(request.path):
            return self.app_endpoint(request)
        refused = self.refused(request)
        if refused is not None:
            return refused
        if fault:
            return fault[2]()
        if request.method == "POST" and request.path == self.graphql_path:
            return self.graphql(request)
        if request.method == "GET" and request.path.startswith(self.rest_prefix + "/"):
            return self.rest(request, request.path[len(self.rest_prefix) :])
        return _json({"message": "Not Found"}, status=404)

    # -- GraphQL ------------------------------------------------------------------

    def graphql(self, request: Request) -> Response:
        body = request.get_json()
        document, variables = body["query"], body.get("variables") or {}
        with self._lock:
            self.graphql_documents.append(document)
        if "defaultBranchRef" in document:
            return _json({"data": self.default_branch_history(document, variables)})
        if "searchQuery" in variables:
            return _json({"data": {"search": self.search(document, variables)}})
        if "query PullRequestFiles" in document:
            return _json({"data": self.nodes_files(document, variables)})
        if "id" in variables:
            return _json({"data": {"node": self.node_reviews(variables)}})
        if "login" in variables:
            return _json({"data": {"repositoryOwner": self.owner_repositories(variables)}})
        return _json({"errors": [{"message": "unexpected query"}]})

    def search(self, document: str, variables: dict) -> dict:
        text = variables["searchQuery"]
        with self._lock:
            self.search_queries.append(text)
        assert "is:pr" in text and "is:merged" in text, text
        first_s, last_s = re.search(r"merged:(\S+)\.\.(\S+)", text).groups()
        first, last = datetime.fromisoformat(first_s), datetime.fromisoformat(last_s)
        org = re.search(r"\borg:(\S+)", text)
        repo = re.search(r"\brepo:(\S+)", text)
        # ``created:>=T``, as GitHub's search syntax documents it for dates with a time
        created = re.search(r"\bcreated:>=(\S+)", text)
        created_from = datetime.fromisoformat(created.group(1)) if created else None
        matches = [
            pr
            for pr in self.prs
            if first <= pr.merged_at.replace(microsecond=0) <= last
            and (created_from is None or pr.created_at.replace(microsecond=0) >= created_from)
            and (not org or pr.repo.split("/")[0].lower() == org.group(1).lower())
            and (not repo or pr.repo.lower() == repo.group(1).lower())
        ]
        matches.sort(key=lambda pr: (pr.created_at, pr.repo, pr.number))
        reachable = matches[:SEARCH_CAP]
        size = min(int(variables.get("pageSize") or 100), 100)
        offset = _offset(variables.get("after"))
        page = reachable[offset : offset + size]
        review_count = int(re.search(r"reviews\(first: (\d+)", document).group(1))
        nodes = [self.pr_node(pr, review_count) for pr in page]
        # ``files(first: N) @include(if: $withFiles)``: as GitHub, only when asked for
        files = re.search(r"files\(first: (\d+)\) @include\(if: \$withFiles\)", document)
        if files and variables.get("withFiles"):
            for node, pr in zip(nodes, page, strict=True):
                node["files"] = _files_page(pr.files, 0, int(files.group(1)))
        return {
            "issueCount": len(matches),
            "pageInfo": {
                "hasNextPage": offset + size < len(reachable),
                "endCursor": _cursor(offset + size),
            },
            "nodes": nodes,
        }

    def pr_node(self, pr: FakePR, review_count: int) -> dict:
        return {
            "id": pr.node_id,
            "number": pr.number,
            "title": pr.title,
            "createdAt": iso(pr.created_at),
            "mergedAt": iso(pr.merged_at),
            "additions": pr.additions,
            "deletions": pr.deletions,
            "baseRefName": pr.base,
            "headRefOid": pr.head_sha,
            "mergeCommit": {"oid": pr.merge_sha} if pr.merge_sha else None,
            "author": {"login": pr.author} if pr.author else None,
            "repository": {"nameWithOwner": pr.repo},
            "commits": {
                "nodes": [{"commit": {"authoredDate": iso(pr.first_commit_at or pr.created_at)}}]
            },
            "reviews": _review_page(pr.reviews, 0, review_count),
        }

    def node_reviews(self, variables: dict) -> dict | None:
        pr = next((p for p in self.prs if p.node_id == variables["id"]), None)
        if pr is None:
            return None
        return {"reviews": _review_page(pr.reviews, _offset(variables.get("after")), 100)}

    def nodes_files(self, document: str, variables: dict) -> dict:
        """``alias: node(id: $idN) { ... on PullRequest { files(first: 100, after: $afterN) } }``
        for every alias of the document, as GitHub answers aliased fields."""
        out: dict[str, dict | None] = {}
        for alias, id_var, after_var in re.findall(
            r"(\w+): node\(id: \$(\w+)\) \{ \.\.\. on PullRequest \{ files\(first: 100, after: \$(\w+)\)",
            document,
        ):
            pr = next((p for p in self.prs if p.node_id == variables[id_var]), None)
            out[alias] = (
                None
                if pr is None
                else {"files": _files_page(pr.files, _offset(variables.get(after_var)), 100)}
            )
        return out

    def owner_repositories(self, variables: dict) -> dict | None:
        repos = self.orgs.get(variables["login"].lower())
        if repos is None:
            return None
        offset = _offset(variables.get("after"))
        page = repos[offset : offset + 100]
        nodes = []
        for repo in page:
            created = [d.created_at for d in self.deployments if d.repo.lower() == repo.lower()]
            latest = [{"createdAt": iso(max(created))}] if created else []
            nodes.append({"nameWithOwner": repo, "deployments": {"nodes": latest}})
        return {
            "__typename": "Organization",
            "repositories": {
                "pageInfo": {
                    "hasNextPage": offset + 100 < len(repos),
                    "endCursor": _cursor(offset + 100),
                },
                "nodes": nodes,
            },
        }

    # -- REST ---------------------------------------------------------------------

    def rest(self, request: Request, path: str) -> Response:
        parts = path.strip("/").split("/")
        if len(parts) >= 4 and parts[0] == "repos" and parts[3] == "deployments":
            repo = f"{parts[1]}/{parts[2]}".lower()
            known = {r.lower() for rs in self.orgs.values() for r in rs} | {
                d.repo.lower() for d in self.deployments
            }
            if repo not in known:
                return _json({"message": "Not Found"}, status=404)
            deployments = sorted(
                (d for d in self.deployments if d.repo.lower() == repo),
                key=lambda d: d.id,
                reverse=True,
            )
            if len(parts) == 4:
                return self.page(request, [_deployment_json(d) for d in deployments])
            if len(parts) == 6 and parts[5] == "statuses":
                dep = next((d for d in deployments if str(d.id) == parts[4]), None)
                if dep is None:
                    return _json({"message": "Not Found"}, status=404)
                statuses = [
                    {
                        "id": dep.id * 100 + i,
                        "state": state,
                        "environment": dep.environment,
                        "created_at": iso(at),
                        "updated_at": iso(at),
                        "description": "",
                    }
                    for i, (state, at) in enumerate(dep.statuses)
                ]
                return self.page(request, list(reversed(statuses)))
        return _json({"message": "Not Found"}, status=404)

    def page(self, request: Request, items: list) -> Response:
        per_page = min(int(request.args.get("per_page", 30)), 100)
        page = int(request.args.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        links = []
        base = request.base_url
        args = {k: v for k, v in request.args.items() if k != "page"}
        if page < last:
            links.append(f'<{base}?{urlencode({**args, "page": page + 1})}>; rel="next"')
            links.append(f'<{base}?{urlencode({**args, "page": last})}>; rel="last"')
        if page > 1:
            links.append(f'<{base}?{urlencode({**args, "page": 1})}>; rel="first"')
        return _json(chunk, headers={"Link": ", ".join(links)} if links else None)

    # -- default-branch history ----------------------------------------------------

    def repo_pushed_at(self, repo: str) -> datetime:
        """The repository's last push: as set, else its latest commit, else long ago."""
        if repo.lower() in self.pushed_at:
            return self.pushed_at[repo.lower()]
        times = [c.committed_at for c in self.commits if c.repo.lower() == repo.lower()]
        return max(times) if times else datetime(2020, 1, 1, tzinfo=UTC)

    def default_branch_history(self, document: str, variables: dict) -> dict:
        if "repositoryOwner" in document:
            repos = self.orgs.get(variables["login"].lower())
            if repos is None:
                return {"repositoryOwner": None}
            ordered = sorted(repos, key=self.repo_pushed_at, reverse=True)
            size = int(re.search(r"repositories\(first: (\d+)", document).group(1))
            offset = _offset(variables.get("after"))
            page = ordered[offset : offset + size]
            return {
                "repositoryOwner": {
                    "repositories": {
                        "pageInfo": {
                            "hasNextPage": offset + size < len(ordered),
                            "endCursor": _cursor(offset + size),
                        },
                        "nodes": [
                            {
                                "nameWithOwner": repo,
                                "pushedAt": iso(self.repo_pushed_at(repo)),
                                "isFork": repo.lower() in self.forks,
                                "defaultBranchRef": self.branch_ref(repo, variables, None),
                            }
                            for repo in page
                        ],
                    }
                }
            }
        name = f"{variables['owner']}/{variables['name']}"
        known = (
            {r for rs in self.orgs.values() for r in rs}
            | {c.repo for c in self.commits}
            | {d.repo for d in self.deployments}
            | {p.repo for p in self.prs}
        )
        repo = next((r for r in known if r.lower() == name.lower()), None)
        if repo is None:
            return {"repository": None}
        return {
            "repository": {
                "nameWithOwner": repo,
                "defaultBranchRef": self.branch_ref(repo, variables, variables.get("historyAfter")),
            }
        }

    def branch_ref(self, repo: str, variables: dict, after: str | None) -> dict:
        """``defaultBranchRef { target { ... on Commit { history(...) } } }``: commits
        committed in [since, until] (seconds, inclusive, as git reads them), newest first."""
        since = datetime.fromisoformat(variables["since"])
        until = datetime.fromisoformat(variables["until"])
        commits = sorted(
            (
                c
                for c in self.commits
                if c.repo.lower() == repo.lower()
                and since <= c.committed_at.replace(microsecond=0) <= until
            ),
            key=lambda c: (c.committed_at, c.oid),
            reverse=True,
        )
        offset = _offset(after)
        page = commits[offset : offset + 100]
        return {
            "name": "main",
            "target": {
                "__typename": "Commit",
                "history": {
                    "pageInfo": {
                        "hasNextPage": offset + 100 < len(commits),
                        "endCursor": _cursor(offset + 100),
                    },
                    "nodes": [
                        {
                            "oid": c.oid,
                            "authoredDate": iso(c.authored_at),
                            "committedDate": iso(c.committed_at),
                            "associatedPullRequests": {
                                "nodes": [
                                    {
                                        "number": number,
                                        "merged": merged,
                                        "mergeCommit": {"oid": oid} if oid else None,
                                    }
                                    for number, merged, oid in c.prs[:5]
                                ]
                            },
                        }
                        for c in page
                    ],
                },
            },
        }

    # -- GitHub App: JWT-authenticated endpoints, installation tokens -------------

    def _app_endpoint(self, path: str) -> bool:
        rest = path[len(self.rest_prefix) :] if path.startswith(self.rest_prefix + "/") else ""
        return bool(
            re.fullmatch(r"/app/installations/\d+/access_tokens", rest)
            or re.fullmatch(r"/orgs/[^/]+/installation", rest)
            or re.fullmatch(r"/repos/[^/]+/[^/]+/installation", rest)
        )

    def _refuse(self, reason: str, message: str = "Bad credentials") -> Response:
        with self._lock:
            self.refusals.append(f"401 {reason}")
        return _json(
            {"message": message, "documentation_url": "https://docs.github.com/rest"}, status=401
        )

    def app_endpoint(self, request: Request) -> Response:
        """As GitHub: the JWT must be signed by the app's key (RS256), name the app in
        ``iss``, be current and live at most ten minutes."""
        app = self.app
        header = request.headers.get("Authorization", "")
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                app.public_key,
                algorithms=["RS256"],
                options={
                    "require": ["iat", "exp", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return self._refuse("jwt undecodable", "A JSON web token could not be decoded")
        now = app.clock()
        if claims["exp"] <= now:
            return self._refuse(
                "jwt expired",
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires",
            )
        if claims["exp"] - claims["iat"] > 600 or claims["iat"] > now + 60:
            return self._refuse(
                "jwt too long", "'Expiration time' claim ('exp') is too far in the future"
            )
        if str(claims["iss"]) != str(app.app_id):
            return self._refuse("jwt issuer", "A JSON web token could not be decoded")
        with self._lock:
            self.app_jwt_claims.append(claims)
        parts = request.path[len(self.rest_prefix) :].strip("/").split("/")
        if parts[0] == "app":
            return self.access_token(int(parts[2]), request.method)
        account = parts[1].lower()
        installation = next((i for i, a in app.installations.items() if a.lower() == account), None)
        if parts[0] == "repos":
            known = {r.lower() for rs in self.orgs.values() for r in rs}
            if f"{parts[1]}/{parts[2]}".lower() not in known:
                installation = None
        if installation is None or request.method != "GET":
            return _json({"message": "Not Found"}, status=404)
        return _json(
            {
                "id": installation,
                "app_id": app.app_id,
                "account": {"login": app.installations[installation], "type": "Organization"},
                "target_type": "Organization",
                "repository_selection": "all",
                "permissions": _APP_PERMISSIONS,
                "suspended_at": "2025-01-01T00:00:00Z" if installation in app.suspended else None,
                "access_tokens_url": f"{self.rest_prefix}/app/installations/{installation}/access_tokens",
            }
        )

    def access_token(self, installation: int, method: str) -> Response:
        app = self.app
        if method != "POST" or installation not in app.installations:
            return _json({"message": "Not Found"}, status=404)
        if installation in app.suspended:
            return _json({"message": "This installation has been suspended"}, status=403)
        token = f"ghs_{secrets.token_hex(18)}"
        expires = app.clock() + app.token_lifetime.total_seconds()
        with self._lock:
            self.installation_tokens[token] = (installation, expires)
        return _json(
            {
                "token": token,
                "expires_at": datetime.fromtimestamp(int(expires), UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "permissions": _APP_PERMISSIONS,
                "repository_selection": "all",
            },
            status=201,
        )

    def revoke_installation_tokens(self) -> None:
        """Every installation token issued so far stops working (401), as after
        ``DELETE /installation/token`` or a key rotation."""
        with self._lock:
            self.installation_tokens.clear()

    def refused(self, request: Request) -> Response | None:
        """None when the request's bearer token is the personal token or a current
        installation token; else GitHub's 401."""
        header = request.headers.get("Authorization", "")
        if header == f"Bearer {self.token}":
            return None
        token = header.removeprefix("Bearer ")
        with self._lock:
            issued = self.installation_tokens.get(token)
        if issued is None:
            return self._refuse("unknown token")
        if issued[1] <= self.app.clock():
            return self._refuse("expired installation token")
        return None


_APP_PERMISSIONS = {
    "contents": "read",
    "pull_requests": "read",
    "deployments": "read",
    "metadata": "read",
}


def _cursor(offset: int) -> str:
    return base64.b64encode(f"cursor:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    return int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0


def _review_page(reviews: list[FakeReview], offset: int, size: int) -> dict:
    visible = [r for r in reviews if r.state != "PENDING"]
    page = visible[offset : offset + size]
    return {
        "pageInfo": {
            "hasNextPage": offset + size < len(visible),
            "endCursor": _cursor(offset + size),
        },
        "nodes": [
            {
                "author": {"login": r.author} if r.author else None,
                "submittedAt": iso(r.submitted_at),
            }
            for r in page
        ],
    }


def _files_page(paths: list[str], offset: int, size: int) -> dict:
    page = paths[offset : offset + size]
    return {
        "totalCount": len(paths),
        "pageInfo": {
            "hasNextPage": offset + size < len(paths),
            "endCursor": _cursor(offset + size),
        },
        "nodes": [{"path": path} for path in page],
    }


def _deployment_json(d: FakeDeployment) -> dict:
    return {
        "url": f"https://api.github.com/repos/{d.repo}/deployments/{d.id}",
        "id": d.id,
        "node_id": f"DE_{d.id}",
        "sha": d.sha,
        "ref": "main",
        "task": "deploy",
        "payload": {},
        "original_environment": d.environment,
        "environment": d.environment,
        "description": None,
        "creator": {"login": "deploy-bot"},
        "created_at": iso(d.created_at),
        "updated_at": iso(d.created_at),
        "statuses_url": f"https://api.github.com/repos/{d.repo}/deployments/{d.id}/statuses",
        "repository_url": f"https://api.github.com/repos/{d.repo}",
        "transient_environment": False,
        "production_environment": d.environment == "production",
    }


def merged_prs(
    repo: str,
    count: int,
    day_start: datetime,
    *,
    start_number: int = 1,
    spread: timedelta = timedelta(hours=23, minutes=59),
) -> list[FakePR]:
    """``count`` PRs of ``repo`` merged across the day, each reviewed by someone else."""
    step = spread / max(count, 1)
    prs = []
    for i in range(count):
        merged = day_start + step * i
        number = start_number + i
        prs.append(
            FakePR(
                repo=repo,
                number=number,
                created_at=merged - timedelta(hours=5),
                merged_at=merged,
                author="alice",
                title=f"Change {number}",
                first_commit_at=merged - timedelta(hours=8),
                reviews=[FakeReview("bob", merged - timedelta(hours=2))],
                merge_sha=f"{number:040x}",
                head_sha=f"{number + 10**6:040x}",
            )
        )
    return prs

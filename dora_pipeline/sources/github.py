"""GitHub: the pull requests merged and the deployments finished on one UTC day.

Pull requests come from the GraphQL search API, one query per organisation or
repository and window: a single search page carries everything a PR record needs
(first commit, first reviews, merge commit), so 100 merged PRs cost one request.
Search answers at most 1,000 results per query, in creation order (``sort:created-asc``);
when a day matches more, the next query of the day starts at the creation second where the
previous one's 1,000 results ended (``created:>=``). The windows follow where the PRs are, so
every page but each window's last is full: a day of 4,000 PRs costs 41-44 requests, where
cutting the day into even time windows spent pages on quiet night hours.

Deployments come from the REST deployments API and each deployment's statuses. The
latest ``success``, ``failure`` or ``error`` status ends a deployment (``failure`` and
``error`` are failed attempts); a deployment without one yet is not emitted. The
partition day is the day of that status. An organisation's repositories are listed
through GraphQL with the time of their latest deployment, so only repositories that
can have a deployment finishing on the day cost REST requests.

``GITHUB_API_URL`` is the REST base: ``https://api.github.com`` (GraphQL at
``/graphql``) or a GitHub Enterprise Server host, given as ``https://ghe.example.com``
or ``https://ghe.example.com/api/v3`` (REST at ``/api/v3``, GraphQL at ``/api/graphql``).

Rate limits, as GitHub documents them: GraphQL answers a primary limit with HTTP 200,
an error of type ``RATE_LIMITED`` and ``x-ratelimit-remaining: 0``: we wait until
``x-ratelimit-reset`` (the shared ``HttpClient`` hook below). Secondary limits answer
403 or 429, with or without ``retry-after``; ``HttpClient`` waits as asked, or a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

from ..config import Settings
from ..records import (
    Deployment,
    DirectChange,
    PullRequest,
    PullRequestFiles,
    Quarantined,
    Record,
    utc_day_bounds,
)
from .base import ExtractContext, Source, SourceError
from .github_app import REFRESH_MARGIN_SECONDS, GitHubAppTokens, InstallationAuth
from .http import HttpClient, RetryHook, RetryPolicy, rate_limit_wait

SEARCH_RESULT_CAP = 1000
TERMINAL_STATES = {"success": False, "failure": True, "error": True}

MERGED_PULL_REQUESTS_QUERY = """
query MergedPullRequests($searchQuery: String!, $pageSize: Int!, $after: String, $withFiles: Boolean = false) {
  search(query: $searchQuery, type: ISSUE, first: $pageSize, after: $after) {
    issueCount
    pageInfo { hasNextPage endCursor }
    nodes {
      ... on PullRequest {
        id
        number
        title
        createdAt
        mergedAt
        additions
        deletions
        baseRefName
        headRefOid
        mergeCommit { oid }
        author { login }
        repository { nameWithOwner }
        commits(first: 1) { nodes { commit { authoredDate } } }
        reviews(first: 10, states: [APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED]) {
          pageInfo { hasNextPage endCursor }
          nodes { author { login } submittedAt }
        }
        files(first: 100) @include(if: $withFiles) { totalCount pageInfo { hasNextPage endCursor } nodes { path } }
      }
    }
  }
}
"""

# The changed files of a pull request, for repositories the catalog splits into folders
# (monorepos): the first 100 come with the search page (``$withFiles``); the later pages
# of up to FILES_BATCH pull requests come together, one aliased PR node each.
FILE_PAGE_FIELDS = "totalCount pageInfo { hasNextPage endCursor } nodes { path }"
FILES_BATCH = 10


def pull_request_files_query(size: int) -> str:
    """The follow-up document for ``size`` pull requests: ``pr<i>`` is the next files
    page of node ``$id<i>`` after ``$after<i>``."""
    variables = ", ".join(f"$id{i}: ID!, $after{i}: String" for i in range(size))
    fields = "\n".join(
        f"  pr{i}: node(id: $id{i}) {{ ... on PullRequest {{ "
        f"files(first: 100, after: $after{i}) {{ {FILE_PAGE_FIELDS} }} }} }}"
        for i in range(size)
    )
    return f"query PullRequestFiles({variables}) {{\n{fields}\n}}\n"


PULL_REQUEST_FILES_QUERIES = tuple(pull_request_files_query(n) for n in range(1, FILES_BATCH + 1))

PULL_REQUEST_REVIEWS_QUERY = """
query PullRequestReviews($id: ID!, $after: String) {
  node(id: $id) {
    ... on PullRequest {
      reviews(first: 100, after: $after, states: [APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED]) {
        pageInfo { hasNextPage endCursor }
        nodes { author { login } submittedAt }
      }
    }
  }
}
"""

# An organisation's repositories with the creation time of their latest deployment:
# one request per 100 repositories tells which ones can have deployments on the day, so
# an organisation of hundreds of repositories costs REST requests only for those.
OWNER_REPOSITORIES_QUERY = """
query OwnerRepositories($login: String!, $after: String) {
  repositoryOwner(login: $login) {
    repositories(first: 100, after: $after, ownerAffiliations: [OWNER]) {
      pageInfo { hasNextPage endCursor }
      nodes {
        nameWithOwner
        deployments(first: 1, orderBy: {field: CREATED_AT, direction: DESC}) {
          nodes { createdAt }
        }
      }
    }
  }
}
"""

# The default branch's commits of one day, each with the merged pull request that
# brought it (a PR's own commits, its merge commit and its squash commit all name it):
# the commits that name none are changes pushed straight to the trunk (DESIGN §7).
DAY_HISTORY_FRAGMENT = """
fragment DayHistory on Commit {
  history(since: $since, until: $until, first: 100, after: $historyAfter) {
    pageInfo { hasNextPage endCursor }
    nodes {
      oid
      authoredDate
      committedDate
      associatedPullRequests(first: 5) { nodes { number merged mergeCommit { oid } } }
    }
  }
}
"""

# One request per 20 repositories of an owner, most recently pushed first: paging stops
# at the first repository not pushed to since the day began (it can hold no commit of
# the day), and a repository's first 100 commits of the day come with it.
OWNER_HISTORY_QUERY = (
    """
query OwnerDefaultBranchHistory($login: String!, $since: GitTimestamp!, $until: GitTimestamp!, $after: String, $historyAfter: String) {
  repositoryOwner(login: $login) {
    repositories(first: 20, after: $after, ownerAffiliations: [OWNER], orderBy: {field: PUSHED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        nameWithOwner
        pushedAt
        isFork
        defaultBranchRef { target { ...DayHistory } }
      }
    }
  }
}
"""
    + DAY_HISTORY_FRAGMENT
)

# A repository's day of default-branch history: GITHUB_REPOS entries, and the pages
# after the first of a busy repository.
REPOSITORY_HISTORY_QUERY = (
    """
query RepositoryDefaultBranchHistory($owner: String!, $name: String!, $since: GitTimestamp!, $until: GitTimestamp!, $historyAfter: String) {
  repository(owner: $owner, name: $name) {
    nameWithOwner
    defaultBranchRef { target { ...DayHistory } }
  }
}
"""
    + DAY_HISTORY_FRAGMENT
)

#: every GraphQL document this source sends (the tests validate them against GitHub's schema)
GRAPHQL_DOCUMENTS = (
    MERGED_PULL_REQUESTS_QUERY,
    PULL_REQUEST_REVIEWS_QUERY,
    OWNER_REPOSITORIES_QUERY,
    OWNER_HISTORY_QUERY,
    REPOSITORY_HISTORY_QUERY,
    *PULL_REQUEST_FILES_QUERIES,
)


@dataclass(frozen=True)
class GitHubEndpoints:
    rest: str
    graphql: str


def github_endpoints(api_url: str) -> GitHubEndpoints:
    """REST base and GraphQL URL for ``GITHUB_API_URL``.

    ``https://api.github.com`` (or ``https://github.com``) -> GraphQL ``https://api.github.com/graphql``;
    ``https://ghe.example.com`` or ``…/api/v3`` -> REST ``…/api/v3``, GraphQL ``…/api/graphql``;
    any other base with a path (a proxy in front of github.com) -> GraphQL ``<base>/graphql``.
    """
    base = api_url.rstrip("/")
    parts = urlsplit(base)
    if parts.hostname == "github.com":  # the web address given for the API
        return GitHubEndpoints("https://api.github.com", "https://api.github.com/graphql")
    if parts.path.endswith("/api/v3"):
        return GitHubEndpoints(base, base[: -len("/v3")] + "/graphql")
    if parts.path in ("", "/") and parts.hostname != "api.github.com":
        return GitHubEndpoints(base + "/api/v3", base + "/api/graphql")
    return GitHubEndpoints(base, base + "/graphql")


def _search_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def merged_search_query(
    qualifier: str, first: datetime, last: datetime, created_from: datetime | None = None
) -> str:
    """Search text for PRs merged from ``first`` to ``last`` (both inclusive, seconds),
    oldest created first; from ``created_from`` on (inclusive) when given."""
    created = f"created:>={_search_time(created_from)} " if created_from else ""
    return (
        f"is:pr is:merged merged:{_search_time(first)}..{_search_time(last)} "
        f"{created}sort:created-asc {qualifier}"
    )


def _time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromisoformat(value)


def last_created(nodes: list[dict]) -> datetime | None:
    """The latest readable ``createdAt`` of search nodes (an unreadable one is the
    record's problem: it is quarantined with its PR, and does not move the cut)."""
    times = []
    for node in nodes:
        try:
            times.append(_time((node or {}).get("createdAt")))
        except (TypeError, ValueError):
            continue
    return max((t for t in times if t is not None), default=None)


def _login(actor: Any) -> str | None:
    return actor.get("login") if isinstance(actor, dict) else None


def first_review(
    reviews: Iterable[dict], pr_author: str | None
) -> tuple[datetime, str | None] | None:
    """The earliest submitted review by someone other than the PR's author."""
    found: tuple[datetime, str | None] | None = None
    author = (pr_author or "").lower()
    for review in reviews:
        login = _login(review.get("author"))
        submitted = _time(review.get("submittedAt"))
        if submitted is None or (author and (login or "").lower() == author):
            continue
        if found is None or submitted < found[0]:
            found = (submitted, login)
    return found


def pull_request_record(node: dict, extra_reviews: Iterable[dict] = ()) -> PullRequest:
    """A search result node (see ``MERGED_PULL_REQUESTS_QUERY``) as a record."""
    author = _login(node.get("author"))
    commits = (node.get("commits") or {}).get("nodes") or []
    first_commit = commits[0].get("commit") if commits and commits[0] else None
    reviews = list((node.get("reviews") or {}).get("nodes") or []) + list(extra_reviews)
    review = first_review((r for r in reviews if r), author)
    merge_commit = node.get("mergeCommit") or {}
    return PullRequest(
        source="github",
        repository=node["repository"]["nameWithOwner"].lower(),
        number=node["number"],
        opened_at=_time(node.get("createdAt")),
        merged_at=_time(node.get("mergedAt")),
        first_commit_at=_time(first_commit.get("authoredDate")) if first_commit else None,
        first_review_at=review[0] if review else None,
        first_reviewer=review[1] if review else None,
        merge_commit_sha=(merge_commit.get("oid") or "").lower() or None,
        head_sha=(node.get("headRefOid") or "").lower() or None,
        title=node.get("title"),
        author=author,
        base_branch=node.get("baseRefName"),
        additions=node.get("additions"),
        deletions=node.get("deletions"),
    )


def deployment_record(
    repository: str, deployment: dict, statuses: Iterable[dict]
) -> Deployment | None:
    """A REST deployment and its statuses as a record; None while it has no terminal status."""
    terminal = [s for s in statuses if s.get("state") in TERMINAL_STATES]
    if not terminal:
        return None
    last = max(terminal, key=lambda s: (_time(s.get("created_at")), s.get("id") or 0))
    repo = repository.lower()
    return Deployment(
        source="github",
        external_id=str(deployment["id"]),
        service_key_type="github_repo",
        service_key=repo,
        repository=repo,
        environment=deployment.get("environment") or "",
        finished_at=_time(last.get("created_at")),
        commit_sha=(deployment.get("sha") or "").lower() or None,
        started_at=_time(deployment.get("created_at")),
        failed=TERMINAL_STATES[last["state"]],
    )


def direct_change_record(repository: str, commit: dict) -> DirectChange | None:
    """A default-branch commit (see ``DAY_HISTORY_FRAGMENT``) as a record, or None when a
    merged pull request contains it: a PR's merge or squash commit names the PR, and so
    do the commits a merged PR carried, so none of them is a direct change."""
    pulls = ((commit.get("associatedPullRequests") or {}).get("nodes")) or []
    if any(pr and pr.get("merged") for pr in pulls):
        return None
    return DirectChange(
        source="github",
        repository=repository.lower(),
        sha=str(commit["oid"]).lower(),
        authored_at=_time(commit.get("authoredDate")),
        committed_at=_time(commit.get("committedDate")),
    )


def _day_history(repository: dict | None) -> dict | None:
    """The history connection of a repository node; None for an empty repository."""
    branch = (repository or {}).get("defaultBranchRef") or {}
    target = branch.get("target") or {}
    return target.get("history")


def graphql_retry_hook(transient_wait: float) -> RetryHook:
    """For ``HttpClient``: GitHub GraphQL's 200-with-error-body answers that mean "try again".

    A primary rate limit (``RATE_LIMITED``, ``x-ratelimit-remaining: 0``) waits until
    ``x-ratelimit-reset`` (or ``retry-after``, else a minute); GitHub's "Something went
    wrong ... timeout" answer is retried after ``transient_wait``. Any other error body is
    accepted and reported by the caller.
    """

    def hook(response: requests.Response, body: Any) -> float | None:
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors:
            return None
        types = {e.get("type") for e in errors if isinstance(e, dict)}
        if "RATE_LIMITED" in types or response.headers.get("x-ratelimit-remaining") == "0":
            wait = rate_limit_wait(response.headers, time.time(), limited=True)
            return 60.0 if wait is None else wait
        messages = " ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        if body.get("data") is None and "timeout" in messages.lower():
            return transient_wait
        return None

    return hook


class GitHubSource(Source):
    """Merged pull requests and deployments from GitHub.com or GitHub Enterprise Server."""

    name = "github"
    writes = ("pull_requests", "deployments", "pull_request_files", "direct_changes")
    description = (
        "GitHub: pull requests merged, deployments finished and commits pushed straight to "
        "the default branch per UTC day"
    )

    def __init__(
        self,
        *,
        concurrency: int = 4,
        page_size: int = 100,
        deployment_lookback: timedelta = timedelta(days=3),
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float = 0.5,
        max_wait: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        token_refresh_margin: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        """``concurrency``: threads fetching organisations and repositories in parallel.
        ``deployment_lookback``: how long before the day a deployment may have been
        created and still finish on the day. ``timeout``/``max_retries`` default to
        DORA_HTTP_TIMEOUT_SECONDS/DORA_HTTP_MAX_RETRIES; ``max_wait`` caps one rate-limit
        wait (a primary limit resets within the hour). ``clock`` and
        ``token_refresh_margin`` (seconds before ``expires_at``) govern GitHub App
        installation tokens."""
        self.clock = clock
        self.token_refresh_margin = token_refresh_margin
        # One token provider per app configuration, kept across partitions: a backfill
        # reuses an installation token for its hour instead of asking for one per day.
        self._app_tokens: dict[tuple, GitHubAppTokens] = {}
        self._app_tokens_lock = threading.Lock()
        self.concurrency = max(1, concurrency)
        self.page_size = page_size
        self.deployment_lookback = deployment_lookback
        self.retry = RetryPolicy(timeout, max_retries, backoff_base, max_wait, sleep)

    def skip_reason(self, settings: Settings) -> str | None:
        if not settings.github_token and not settings.github_app_id:
            return "GITHUB_TOKEN is not set"
        if not settings.github_orgs and not settings.github_repos:
            given = "GITHUB_APP_ID" if settings.github_app_id else "GITHUB_TOKEN"
            return f"{given} is set but GITHUB_ORGS and GITHUB_REPOS are both empty"
        return None

    def extract(self, day: date, ctx: ExtractContext) -> list[Record | Quarantined]:
        return _Extraction(self, ctx, day).run()

    def app_tokens(
        self, settings: Settings, rest: str, orgs: list[str], repos: list[str]
    ) -> GitHubAppTokens:
        """The GitHub App token provider for these settings (made once, then reused)."""
        key = (
            settings.github_app_id,
            settings.github_app_private_key,
            settings.github_app_installation_id,
            rest,
            tuple(orgs),
            tuple(repos),
        )
        with self._app_tokens_lock:
            tokens = self._app_tokens.get(key)
            if tokens is None:
                tokens = self._app_tokens[key] = GitHubAppTokens(
                    settings,
                    rest,
                    self.retry,
                    orgs=orgs,
                    repos=repos,
                    clock=self.clock,
                    refresh_margin=self.token_refresh_margin,
                )
            return tokens


class _Extraction:
    """One partition's extract: its clients (one per thread), window and scopes."""

    def __init__(self, source: GitHubSource, ctx: ExtractContext, day: date) -> None:
        self.source = source
        self.settings = ctx.settings
        self.log = ctx.log
        self.day = day
        self.day_start, self.day_end = utc_day_bounds(day)
        self.endpoints = github_endpoints(ctx.settings.github_api_url)
        self.orgs = sorted({o.lower() for o in ctx.settings.github_orgs})
        # A repository of a listed organisation is already covered by the organisation.
        self.repos = sorted(
            {
                r.lower()
                for r in ctx.settings.github_repos
                if r.split("/")[0].lower() not in self.orgs
            }
        )
        for repo in self.repos:
            if repo.count("/") != 1 or not all(repo.split("/")):
                raise SourceError(f"GITHUB_REPOS entry {repo!r} is not owner/name")
        self._local = threading.local()
        self._clients: list[HttpClient] = []
        self._lock = threading.Lock()
        self.graphql_hook = graphql_retry_hook(transient_wait=source.retry.backoff_base * 4)
        self.file_repositories = folder_repositories(ctx.warehouse_url)
        self.app_tokens = self._app_tokens()
        if self.app_tokens is not None:
            self.log.info("github: authenticating as GitHub App %s", self.settings.github_app_id)

    def _app_tokens(self) -> GitHubAppTokens | None:
        """GitHub App installation tokens when the app is configured (it wins over a
        GITHUB_TOKEN also set: an organisation moving to the app means to use it)."""
        if not self.settings.github_app_id:
            return None
        return self.source.app_tokens(self.settings, self.endpoints.rest, self.orgs, self.repos)

    # -- plumbing -------------------------------------------------------------------

    def client(self) -> HttpClient:
        client = getattr(self._local, "client", None)
        if client is None:
            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
            if self.app_tokens is None:
                headers["Authorization"] = f"Bearer {self.settings.github_token.get()}"
            client = self.source.retry.client(
                self.settings, self.endpoints.rest, name="github", headers=headers
            )
            if self.app_tokens is not None:
                client.session.auth = InstallationAuth(
                    self.app_tokens, client.session, lambda: self._local.owner
                )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def parallel(self, func: Callable[[str], list], items: list[str]) -> list:
        """``func`` over ``items`` on the thread pool, results in ``items`` order; the
        first failure cancels what has not started and is raised."""
        if self.source.concurrency == 1 or len(items) <= 1:
            return [self._for_owner(func, item) for item in items]
        pool = ThreadPoolExecutor(max_workers=self.source.concurrency, thread_name_prefix="github")
        try:
            futures = [pool.submit(self._for_owner, func, item) for item in items]
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _for_owner(self, func: Callable[[str], list], item: str) -> list:
        """``func(item)`` with the item's owner as the thread's current owner: a GitHub
        App's installation token is per owner. Items are ``org:acme``, ``repo:acme/api``,
        ``acme`` or ``acme/api``."""
        self._local.owner = item.split(":")[-1].split("/")[0]
        return func(item)

    def graphql(self, query: str, variables: dict, what: str) -> dict:
        body = self.client().json(
            "POST",
            self.endpoints.graphql,
            json_body={"query": query, "variables": variables},
            retry_hook=self.graphql_hook,
        )
        if not isinstance(body, dict):
            raise SourceError(f"github: GraphQL answer for {what} is not a JSON object")
        if body.get("errors"):
            messages = "; ".join(
                str(e.get("message", e))[:200] if isinstance(e, dict) else str(e)[:200]
                for e in body["errors"][:3]
            )
            raise SourceError(f"github: GraphQL errors for {what}: {messages}")
        if not isinstance(body.get("data"), dict):
            raise SourceError(f"github: GraphQL answer for {what} has no data")
        return body["data"]

    def rest_pages(self, path: str, params: dict[str, Any]) -> Iterable[list]:
        """Every page of a REST list, following ``Link: rel="next"`` to the end."""
        client = self.client()
        url: str | None = path
        rest_origin = urlsplit(self.endpoints.rest)[:2]
        while url:
            page, next_url = self._rest_page(client, url, params)
            yield page
            if next_url and urlsplit(next_url)[:2] != rest_origin:
                raise SourceError(
                    f"github: GET {urlsplit(client.url(path)).path}: next page link leaves {self.endpoints.rest}"
                )
            url, params = next_url, {}

    def _rest_page(self, client: HttpClient, url: str, params: dict) -> tuple[list, str | None]:
        # The body and the answer: the Link header is the page's next URL.
        body, response = client.json_response("GET", url, params=params or None)
        if not isinstance(body, list):
            raise SourceError(
                f"github: GET {urlsplit(client.url(url)).path}: expected a JSON list, got {type(body).__name__}"
            )
        return body, response.links.get("next", {}).get("url")

    # -- the partition ----------------------------------------------------------------

    def run(self) -> list[Record | Quarantined]:
        scopes = [f"org:{o}" for o in self.orgs] + [f"repo:{r}" for r in self.repos]
        try:
            pull_requests: dict[tuple[str, int], Record | Quarantined] = {}
            for batch in self.parallel(self.merged_pull_requests, scopes):
                for key, record in batch:
                    pull_requests[key] = record
            repositories = sorted(
                {r for batch in self.parallel(self.org_repositories, self.orgs) for r in batch}
                | set(self.repos)
            )
            deployments = [
                d for batch in self.parallel(self.deployments, repositories) for d in batch
            ]
            direct = self.direct_changes()
        finally:
            for client in self._clients:
                client.session.close()
        self.log.info(
            "github %s: %d merged pull requests from %d search scopes, %d deployments from "
            "%d repositories, %d direct changes, %d requests",
            self.day,
            len(pull_requests),
            len(scopes),
            len(deployments),
            len(repositories),
            len(direct),
            sum(c.requests_sent for c in self._clients),
        )
        return (
            [pull_requests[k] for k in sorted(pull_requests, key=str)]
            + sorted(deployments, key=lambda d: int(d.external_id))
            + direct
        )

    def merged_pull_requests(
        self, scope: str
    ) -> list[tuple[tuple[str, int], Record | Quarantined]]:
        last = self.day_end - timedelta(seconds=1)
        nodes: dict[str, dict] = {}
        for node in self.search_window(scope, self.day_start, last):
            if node and node.get("id"):
                nodes[node["id"]] = node
        out = []
        files: dict[tuple[str, int], ChangedFiles] = {}
        for node in nodes.values():
            key = (
                str((node.get("repository") or {}).get("nameWithOwner", "")).lower(),
                node.get("number"),
            )
            try:
                merged = _time(node.get("mergedAt"))
                if merged is None or not self.day_start <= merged < self.day_end:
                    continue  # merged on another day: that partition's search finds it
                record = pull_request_record(node, self.more_reviews(node))
                first_files = (
                    ChangedFiles.first_page(node) if key[0] in self.file_repositories else None
                )
                out.append((key, record))
                if first_files is not None:
                    files[key] = first_files
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                out.append(
                    (
                        key,
                        Quarantined(
                            "github",
                            "pull_requests",
                            f"{key[0]}#{key[1]}",
                            f"payload: unreadable pull request ({type(exc).__name__}: {exc})",
                            node,
                        ),
                    )
                )
        self.more_files(list(files.values()))
        return out + [((*key, "files"), f.record()) for key, f in files.items()]

    def search_window(self, scope: str, first: datetime, last: datetime) -> list[dict]:
        """Every PR merged in ``[first, last]``. A query reaches 1,000 results at most, the
        oldest created first; while more match, the next one starts at the creation second
        the previous one ended on (inclusive, as PRs created in that second may lie on both
        sides of the cut; the caller keeps one node per id)."""
        nodes: list[dict] = []
        created_from: datetime | None = None
        while True:
            query = merged_search_query(scope, first, last, created_from)
            found, count = self.search_query(scope, query)
            nodes.extend(found)
            if count <= len(found):
                return nodes
            ended = last_created(found)
            if len(found) < SEARCH_RESULT_CAP or ended is None:
                self.log.warning("github: %s reported %d results but returned %d", query, count, len(found))
                return nodes
            if ended == created_from:
                raise SourceError(
                    f"github: over {SEARCH_RESULT_CAP} pull requests of {scope} merged on "
                    f"{first.date()} were created within one second ({_search_time(ended)}); "
                    "search cannot return more than 1000 per query"
                )
            self.log.info(
                "github: %s matches %d pull requests, over the search cap: continuing from %s",
                query,
                count,
                _search_time(ended),
            )
            created_from = ended

    def search_query(self, scope: str, query: str) -> tuple[list[dict], int]:
        """Every page of one search query (1,000 results at most) and its issueCount."""
        what = f"search {query!r}"
        variables: dict[str, Any] = {
            "searchQuery": query,
            "pageSize": self.source.page_size,
            "after": None,
            "withFiles": self.needs_files(scope),
        }
        search = self._search(variables, what)
        nodes = list(search.get("nodes") or [])
        while search["pageInfo"]["hasNextPage"]:
            variables["after"] = search["pageInfo"]["endCursor"]
            search = self._search(variables, what)
            nodes.extend(search.get("nodes") or [])
        return nodes, int(search.get("issueCount") or 0)

    def _search(self, variables: dict, what: str) -> dict:
        search = self.graphql(MERGED_PULL_REQUESTS_QUERY, variables, what).get("search")
        if not isinstance(search, dict) or not isinstance(search.get("pageInfo"), dict):
            raise SourceError(f"github: GraphQL answer for {what} has no search results")
        return search

    def more_reviews(self, node: dict) -> list[dict]:
        """Later review pages, fetched only when the first page holds no review by
        someone other than the author (rare: the search page carries 10 reviews)."""
        reviews = node.get("reviews") or {}
        page_info = reviews.get("pageInfo") or {}
        author = _login(node.get("author"))
        if not page_info.get("hasNextPage") or first_review(reviews.get("nodes") or [], author):
            return []
        found: list[dict] = []
        after = page_info.get("endCursor")
        while True:
            what = f"reviews of {node['repository']['nameWithOwner']}#{node['number']}"
            data = self.graphql(
                PULL_REQUEST_REVIEWS_QUERY, {"id": node["id"], "after": after}, what
            )
            page = ((data.get("node") or {}).get("reviews")) or {}
            found.extend(page.get("nodes") or [])
            info = page.get("pageInfo") or {}
            if first_review(found, author) or not info.get("hasNextPage"):
                return found
            after = info.get("endCursor")

    def owner_repositories(self, query: str, variables: dict, what: str) -> dict:
        """One page of ``repositoryOwner.repositories`` for ``variables["login"]``."""
        login = variables["login"]
        owner = self.graphql(query, variables, f"{what} of {login}").get("repositoryOwner")
        if not isinstance(owner, dict):
            raise SourceError(f"github: no organisation {login!r} is visible to the token")
        return owner.get("repositories") or {}

    def needs_files(self, scope: str) -> bool:
        """Whether a search scope (``org:acme``, ``repo:acme/mono``) holds a repository
        whose PRs need their file lists: only those pay for the larger search pages."""
        kind, _, name = scope.partition(":")
        if kind == "repo":
            return name in self.file_repositories
        return any(r.split("/")[0] == name for r in self.file_repositories)

    def more_files(self, lists: list[ChangedFiles]) -> None:
        """Every later files page of the pull requests in ``lists`` that have one, up to
        FILES_BATCH pull requests a request, until GitHub says there are no more."""
        pending = [f for f in lists if f.after]
        while pending:
            batch, pending = pending[:FILES_BATCH], pending[FILES_BATCH:]
            variables: dict[str, Any] = {}
            for i, files in enumerate(batch):
                variables[f"id{i}"], variables[f"after{i}"] = files.node_id, files.after
            what = "files of " + ", ".join(f"{f.repository}#{f.number}" for f in batch)
            data = self.graphql(PULL_REQUEST_FILES_QUERIES[len(batch) - 1], variables, what)
            for i, files in enumerate(batch):
                page = (data.get(f"pr{i}") or {}).get("files")
                if not isinstance(page, dict):
                    raise SourceError(
                        f"github: GraphQL answer for {what} has no files for "
                        f"{files.repository}#{files.number}"
                    )
                files.add_page(page)
            pending += [f for f in batch if f.after]

    def org_repositories(self, org: str) -> list[str]:
        """The organisation's repositories that have a deployment created since the
        lookback start (the others cannot have one finishing on the day)."""
        oldest = self.day_start - self.source.deployment_lookback
        found, listed = [], 0
        variables: dict[str, Any] = {"login": org, "after": None}
        while True:
            page = self.owner_repositories(OWNER_REPOSITORIES_QUERY, variables, "repositories")
            for repo in page.get("nodes") or []:
                listed += 1
                latest = ((repo.get("deployments") or {}).get("nodes") or [None])[0]
                created = _time(latest.get("createdAt")) if latest else None
                if created is not None and created >= oldest:
                    found.append(str(repo["nameWithOwner"]).lower())
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            variables["after"] = info.get("endCursor")
        self.log.debug(
            "github: %s has %d repositories, %d with recent deployments", org, listed, len(found)
        )
        return found

    def deployments(self, repository: str) -> list[Deployment]:
        oldest = self.day_start - self.source.deployment_lookback
        found = []
        for page in self.rest_pages(f"repos/{repository}/deployments", {"per_page": 100}):
            reached_oldest = False
            for deployment in page:
                try:
                    created = _time(deployment.get("created_at"))
                    if created is None or created >= self.day_end:
                        continue
                    if created < oldest:
                        reached_oldest = True  # listed newest first: the rest are older still
                        continue
                    record = deployment_record(
                        repository, deployment, self.statuses(repository, deployment["id"])
                    )
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    raise SourceError(
                        f"github: unreadable deployment in {repository} ({type(exc).__name__}: {exc})"
                    ) from None
                if record and self.day_start <= record.finished_at < self.day_end:
                    found.append(record)
            if reached_oldest:
                break
        return found

    def statuses(self, repository: str, deployment_id: Any) -> list[dict]:
        path = f"repos/{repository}/deployments/{int(deployment_id)}/statuses"
        return [status for page in self.rest_pages(path, {"per_page": 100}) for status in page]

    # -- changes pushed straight to the default branch ------------------------------

    def direct_changes(self) -> list[Record | Quarantined]:
        """Every owner's and listed repository's default-branch commits of the day that
        no merged pull request contains, sorted by repository and SHA."""
        items = [f"org:{o}" for o in self.orgs] + [f"repo:{r}" for r in self.repos]
        found = [c for batch in self.parallel(self.day_history, items) for c in batch]
        return sorted(found, key=lambda r: r.record_key if isinstance(r, Quarantined) else r.key())

    def _history_variables(self) -> dict[str, Any]:
        return {
            "since": _search_time(self.day_start),
            "until": _search_time(self.day_end - timedelta(seconds=1)),
            "historyAfter": None,
        }

    def day_history(self, item: str) -> list[Record | Quarantined]:
        kind, _, name = item.partition(":")
        if kind == "repo":
            return self.repository_history(name)
        found: list[Record | Quarantined] = []
        variables = {**self._history_variables(), "login": name, "after": None}
        while True:
            page = self.owner_repositories(OWNER_HISTORY_QUERY, variables, "default-branch history")
            pushed_before_day = False
            for repo in page.get("nodes") or []:
                pushed = _time((repo or {}).get("pushedAt"))
                if pushed is not None and pushed < self.day_start:
                    pushed_before_day = True  # most recently pushed first: the rest are older
                    break
                history = _day_history(repo)
                # A fork's default branch carries its upstream's commits, which are no
                # changes of this organisation; an empty repository has no branch.
                if history is not None and not repo.get("isFork"):
                    found += self.repository_history(str(repo["nameWithOwner"]), history)
            info = page.get("pageInfo") or {}
            if pushed_before_day or not info.get("hasNextPage"):
                return found
            variables["after"] = info.get("endCursor")

    def repository_history(
        self, repository: str, history: dict | None = None
    ) -> list[Record | Quarantined]:
        """The direct changes of one repository's day: ``history`` is its first page when
        the owner's listing brought it (None: fetch every page here)."""
        owner, _, name = repository.partition("/")
        variables = {**self._history_variables(), "owner": owner, "name": name}
        what = f"default-branch history of {repository}"
        if history is None:
            data = self.graphql(REPOSITORY_HISTORY_QUERY, variables, what)
            if not isinstance(data.get("repository"), dict):
                raise SourceError(f"github: no repository {repository!r} is visible to the token")
            history = _day_history(data["repository"])
        found: list[Record | Quarantined] = []
        while history is not None:
            for commit in history.get("nodes") or []:
                try:
                    if not self._committed_on_day(commit):
                        continue
                    record = direct_change_record(repository, commit)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    found.append(
                        Quarantined(
                            "github",
                            "direct_changes",
                            f"{repository.lower()}@{str((commit or {}).get('oid'))[:64]}",
                            f"payload: unreadable commit ({type(exc).__name__}: {exc})",
                            commit,
                        )
                    )
                    continue
                if record is not None:
                    found.append(record)
            info = history.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            variables["historyAfter"] = info.get("endCursor")
            data = self.graphql(REPOSITORY_HISTORY_QUERY, variables, what)
            history = _day_history(data.get("repository"))
        return found

    def _committed_on_day(self, commit: dict) -> bool:
        # history(since, until) already filters by committed time; a commit outside the
        # day (a GHES that reads the bounds differently) is another partition's. A
        # missing time keeps the commit, so validation quarantines it with the reason.
        committed = _time(commit.get("committedDate"))
        return committed is None or self.day_start <= committed < self.day_end


@dataclass
class ChangedFiles:
    """A pull request's changed paths as far as fetched; ``after``: the next page's cursor."""

    node_id: str
    repository: str
    number: int
    total: int | None
    paths: list[str]
    after: str | None = None

    @classmethod
    def first_page(cls, node: dict) -> ChangedFiles:
        """The page a search node carries (``files`` asked with ``$withFiles``)."""
        page = node.get("files")
        if not isinstance(page, dict):
            raise ValueError("no files on a search page that asked for them")
        files = cls(
            node["id"],
            node["repository"]["nameWithOwner"].lower(),
            node["number"],
            page.get("totalCount"),
            [],
        )
        files.add_page(page)
        return files

    def add_page(self, page: dict) -> None:
        self.paths.extend(f["path"] for f in page.get("nodes") or [] if f)
        info = page.get("pageInfo") or {}
        self.after = info.get("endCursor") if info.get("hasNextPage") else None

    def record(self) -> PullRequestFiles:
        return PullRequestFiles(
            source="github",
            repository=self.repository,
            number=self.number,
            paths=tuple(self.paths),
            changed_files=self.total,
        )


def folder_repositories(warehouse_url: str) -> frozenset[str]:
    """Repositories (owner/name, lower-case) that a catalog component names with a folder
    in ``backstage.io/source-location``: their PRs need file lists. Read from the raw
    catalog with the models' own reading of the annotation; empty without a warehouse."""
    if not warehouse_url:
        return frozenset()
    try:
        with psycopg.connect(warehouse_url) as conn:
            rows = conn.execute(
                """
                select distinct f.repository
                from dora_raw.catalog_entities as c
                cross join lateral dora_lib.source_location_folder(
                    c.annotations ->> 'backstage.io/source-location') as f
                where c.kind = 'component'
                """
            ).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction):
        raise SourceError(
            "github: the warehouse has no catalog tables yet; run `dora-pipeline migrate`"
        ) from None
    return frozenset(r for (r,) in rows)


SOURCE = GitHubSource()

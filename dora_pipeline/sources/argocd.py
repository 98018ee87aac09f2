"""ArgoCD deployments, read from the Kubernetes API (``argoproj.io/v1alpha1`` Applications).

Each ``status.history`` entry of an Application is one successful, full sync: a
deployment (natural key: application UID + history id). A ``status.operationState`` in
phase ``Failed`` or ``Error`` is a failed attempt (natural key: application UID +
the operation's ``startedAt``). ArgoCD keeps only the last ``revisionHistoryLimit``
history entries, so besides the daily partition a Dagster sensor
(``dora_pipeline.defs.sensors.poll_argocd``) lands ``visible_by_day`` every
``ARGOCD_POLL_SECONDS``: every entry visible now, so an entry that rolls off between
two partition runs is already stored, and the natural keys make sure nothing is
counted twice. The source only reads the cluster; the sensor writes to the warehouse.
See docs/sources/argocd.md.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime

from ..config import Settings
from ..records import SHA_RE, Deployment, Quarantined
from .base import ExtractContext, Source, SourceError
from .http import InvalidJson, Retry, RetryLoop, RetryPolicy, rate_limit_wait

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
FAILED_PHASES = frozenset({"Failed", "Error"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_CAP_SECONDS = 60.0  # longest backoff between two attempts at one page
# In a pod the in-cluster config is used by default; these values of ARGOCD_KUBECONFIG
# turn the source off there (a cluster without ArgoCD).
OFF_VALUES = frozenset({"off", "none", "disabled"})
SOURCE_NAME = "argocd"


# ---------------------------------------------------------------- payload mapping (pure)


def parse_time(value: object) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, ``...Z``). None when absent; ValueError when
    malformed. A value without a zone stays naive, so validation quarantines it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value)


def commit_sha(revision: object) -> str | None:
    """The revision as a lower-case commit SHA, or None when it is not one.

    ArgoCD's revision is a Git commit for Git sources but a chart version (``1.4.2``)
    for Helm repositories; such a deployment still counts, it only cannot be linked to
    pull requests, so it lands with a NULL ``commit_sha`` instead of being quarantined.
    Multi-source applications carry ``revisions``: the first one that is a SHA is used.
    """
    candidates = revision if isinstance(revision, list) else [revision]
    for candidate in candidates:
        if isinstance(candidate, str) and SHA_RE.match(candidate.strip().lower()):
            return candidate.strip().lower()
    return None


def environment_of(app: dict, strategy: str) -> str:
    """The environment name by ``ARGOCD_ENVIRONMENT_FROM``: the destination namespace,
    the project, or a label. Empty when the application has none (the loader then
    quarantines the deployment with the reason ``environment: is missing``)."""
    if strategy == "project":
        value = (app.get("spec") or {}).get("project")
    elif strategy.startswith("label:"):
        value = ((app.get("metadata") or {}).get("labels") or {}).get(strategy[len("label:"):])
    else:
        value = ((app.get("spec") or {}).get("destination") or {}).get("namespace")
    return value if isinstance(value, str) else ""


def application_records(app: dict, strategy: str = "namespace") -> list[Deployment | Quarantined]:
    """Every deployment (history entry) and failed attempt (operationState) of one Application."""
    metadata = app.get("metadata") or {}
    status = app.get("status") or {}
    uid, name = metadata.get("uid"), metadata.get("name")
    where = f"{metadata.get('namespace', '?')}/{name or '?'}"
    if not uid or not name:
        return [Quarantined(SOURCE_NAME, "deployments", where, "application: no metadata.uid or name",
                            {"metadata": metadata})]
    environment = environment_of(app, strategy)
    out: list[Deployment | Quarantined] = []

    history = status.get("history") or []
    for index, entry in enumerate(history if isinstance(history, list) else []):
        key = f"{uid}:{entry.get('id')}" if isinstance(entry, dict) else f"{uid}:#{index}"
        if not isinstance(entry, dict) or entry.get("id") is None:
            out.append(Quarantined(SOURCE_NAME, "deployments", key,
                                   f"status.history[{index}]: entry has no id", entry))
            continue
        try:
            started, finished = parse_time(entry.get("deployStartedAt")), parse_time(entry.get("deployedAt"))
        except ValueError as exc:
            out.append(Quarantined(SOURCE_NAME, "deployments", key,
                                   f"status.history[{index}].deployedAt: {exc}", _slim(entry)))
            continue
        if finished is None:
            out.append(Quarantined(SOURCE_NAME, "deployments", key,
                                   f"status.history[{index}].deployedAt: is missing", _slim(entry)))
            continue
        out.append(Deployment(
            source=SOURCE_NAME, external_id=key, service_key_type="argocd_app", service_key=name,
            environment=environment, finished_at=finished, started_at=started,
            commit_sha=commit_sha(entry.get("revision") or entry.get("revisions")),
        ))

    operation = status.get("operationState") or {}
    if operation.get("phase") in FAILED_PHASES:
        started_raw = operation.get("startedAt")
        key = f"{uid}:op:{started_raw}"
        try:
            started, finished = parse_time(started_raw), parse_time(operation.get("finishedAt"))
        except ValueError as exc:
            out.append(Quarantined(SOURCE_NAME, "deployments", key,
                                   f"status.operationState: {exc}", _slim(operation)))
            return out
        if started is None or finished is None:
            out.append(Quarantined(SOURCE_NAME, "deployments", key,
                                   "status.operationState: startedAt or finishedAt is missing",
                                   _slim(operation)))
            return out
        sync = (operation.get("operation") or {}).get("sync") or {}
        result = operation.get("syncResult") or {}
        out.append(Deployment(
            source=SOURCE_NAME, external_id=key, service_key_type="argocd_app", service_key=name,
            environment=environment, finished_at=finished, started_at=started, failed=True,
            commit_sha=commit_sha(result.get("revision") or result.get("revisions")
                                  or sync.get("revision") or sync.get("revisions")),
        ))
    return out


def _slim(entry: object) -> object:
    """A history entry or operation without its (large, repetitive) source/syncResult."""
    if not isinstance(entry, dict):
        return entry
    return {k: v for k, v in entry.items() if k not in ("source", "sources", "syncResult")}


def record_day(record: Deployment | Quarantined) -> date | None:
    """The UTC day a record belongs to (its finished time); None for an undated problem."""
    if isinstance(record, Quarantined):
        return None
    finished = record.finished_at
    return (finished.astimezone(UTC) if finished.tzinfo else finished).date()


# ---------------------------------------------------------------- Kubernetes I/O


class ApplicationLister:
    """Lists Applications page by page (limit/continue).

    A 410 Gone means the continue token expired (the API server keeps a consistent
    snapshot only for a few minutes): the list restarts from the beginning, at most
    ``max_restarts`` times, and pages from the abandoned attempt are dropped so no
    application is seen twice. Each page goes through the shared ``RetryLoop``: 429 and
    5xx answers (``Retry-After`` honoured), connection errors and bodies that are not
    valid JSON are retried; anything else fails the extract with ``SourceError``.
    """

    def __init__(
        self,
        api: object,
        namespaces: tuple[str, ...],
        *,
        retry: RetryLoop,
        page_size: int = 100,
        max_restarts: int = 3,
        timeout: float = 30.0,
        in_cluster: bool = False,
    ) -> None:
        self.api = api
        self.in_cluster = in_cluster
        self.namespaces = namespaces
        self.retry = retry
        self.page_size = page_size
        self.max_restarts = max_restarts
        self.timeout = timeout
        self.restarts = 0

    def list_all(self) -> list[dict]:
        scopes: Iterable[str | None] = self.namespaces or (None,)
        return [app for scope in scopes for app in self._list_scope(scope)]

    def _list_scope(self, namespace: str | None) -> list[dict]:
        from kubernetes.client.exceptions import ApiException

        for _attempt in range(self.max_restarts + 1):
            items: list[dict] = []
            token: str | None = None
            try:
                while True:
                    page = self._page(namespace, token)
                    items.extend(page.get("items") or [])
                    token = (page.get("metadata") or {}).get("continue") or None
                    if not token:
                        return items
            except ApiException as exc:
                if exc.status != 410:
                    raise
                self.restarts += 1
                log.info("argocd: continue token expired (410 Gone); restarting the list of %s",
                         _scope_name(namespace))
        raise SourceError(
            f"argocd: listing applications in {_scope_name(namespace)} kept failing with 410 Gone "
            f"(expired continue token) after {self.max_restarts} restarts; "
            "try a larger page size or a shorter poll interval"
        )

    def _page(self, namespace: str | None, token: str | None) -> dict:
        kwargs = {"limit": self.page_size, "_request_timeout": (self.timeout, self.timeout)}
        if token:
            kwargs["_continue"] = token
        return self.retry.run(f"argocd: listing applications in {_scope_name(namespace)}",
                              lambda: self._attempt(namespace, kwargs))

    def _attempt(self, namespace: str | None, kwargs: dict) -> dict | Retry:
        """One request for one page, or why to try again; a 410 is raised for ``_list_scope``."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            if namespace is None:
                return self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
            return self.api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise
            if exc.status not in RETRY_STATUSES:
                raise SourceError(_api_error(exc, namespace, self.in_cluster)) from None
            return Retry(f"HTTP {exc.status}", rate_limit_wait(exc.headers or {}, time.time()))
        except ValueError as exc:
            # A body cut off mid-JSON, which the client fails to decode.
            return InvalidJson(f"{type(exc).__name__}: {exc}")
        except Urllib3Error as exc:
            return Retry(type(exc).__name__)


def _scope_name(namespace: str | None) -> str:
    return f"namespace {namespace}" if namespace else "all namespaces"


def _api_error(exc: object, namespace: str | None, in_cluster: bool) -> str:
    status = getattr(exc, "status", None)
    hint = ""
    if status in (401, 403):
        hint = (" — the credentials need get/list/watch on applications.argoproj.io "
                "(see docs/sources/argocd.md for the RBAC rule)")
    elif status == 404:
        hint = " — is ArgoCD (the Application CRD) installed in this cluster?"
    if in_cluster and status in (401, 403, 404):
        hint += ("; the pod's in-cluster config was used because ARGOCD_KUBECONFIG is unset: "
                 "set ARGOCD_KUBECONFIG=off if ArgoCD does not run in this cluster")
    return f"argocd: listing applications in {_scope_name(namespace)} failed with HTTP {status}{hint}"


# ---------------------------------------------------------------- the source


class ArgoCDSource(Source):
    """ArgoCD Applications: history entries are deployments, failed operations failed attempts."""

    name = SOURCE_NAME
    writes = ("deployments",)
    description = "ArgoCD Application sync history (deployments) and failed operations, via the Kubernetes API"

    def __init__(
        self,
        *,
        page_size: int = 100,
        max_restarts: int = 3,
        backoff_base: float = 0.5,
        max_wait: float = 900.0,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``timeout`` defaults to DORA_HTTP_TIMEOUT_SECONDS and the attempts per page to
        DORA_HTTP_MAX_RETRIES + 1; ``max_wait`` caps one ``Retry-After`` wait."""
        self.page_size = page_size
        self.max_restarts = max_restarts
        self.retry = RetryPolicy(timeout, None, backoff_base, max_wait, sleep, backoff_cap=BACKOFF_CAP_SECONDS)

    def skip_reason(self, settings: Settings) -> str | None:
        if settings.argocd_kubeconfig.lower() in OFF_VALUES:
            return f"ARGOCD_KUBECONFIG is {settings.argocd_kubeconfig!r} (ArgoCD turned off)"
        if settings.argocd_kubeconfig or settings.kubernetes_service_host:
            return None
        return "ARGOCD_KUBECONFIG is not set and not running in a Kubernetes pod"

    def api_client(self, settings: Settings):
        """A Kubernetes ApiClient: from ARGOCD_KUBECONFIG, else the pod's service account."""
        from kubernetes import client, config

        configuration = client.Configuration()
        # Retries are ours (with backoff); urllib3's silent ones would multiply timeouts.
        configuration.retries = 0
        try:
            if settings.argocd_kubeconfig:
                api_client = config.new_client_from_config(
                    config_file=settings.argocd_kubeconfig,
                    persist_config=False,
                    client_configuration=configuration,
                )
            else:
                config.load_incluster_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
        except (config.ConfigException, OSError) as exc:
            where = (f"ARGOCD_KUBECONFIG {settings.argocd_kubeconfig}" if settings.argocd_kubeconfig
                     else "the in-cluster service account")
            raise SourceError(f"argocd: cannot load Kubernetes configuration from {where}: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return api_client

    def applications(self, settings: Settings) -> list[dict]:
        """Every Application visible now, in ARGOCD_NAMESPACES or all namespaces."""
        from kubernetes import client

        with self.api_client(settings) as api_client:
            in_cluster = not settings.argocd_kubeconfig
            lister = ApplicationLister(
                client.CustomObjectsApi(api_client),
                settings.argocd_namespaces,
                retry=self.retry.loop(settings),
                page_size=self.page_size,
                max_restarts=self.max_restarts,
                timeout=self.retry.timeout_for(settings),
                in_cluster=in_cluster,
            )
            return lister.list_all()

    def records(self, settings: Settings) -> list[Deployment | Quarantined]:
        """Every deployment and failed attempt visible now, of every day."""
        return [
            record
            for app in self.applications(settings)
            for record in application_records(app, settings.argocd_environment_from)
        ]

    def extract(self, day: date, ctx: ExtractContext) -> list[Deployment | Quarantined]:
        """The entries that finished on ``day`` (UTC), plus problems that have no date."""
        return [r for r in self.records(ctx.settings) if record_day(r) in (day, None)]

    def visible_by_day(self, settings: Settings) -> tuple[int, dict[date, list[Deployment | Quarantined]]]:
        """What the poll lands: how many Applications are visible now, and every entry and
        failed operation of theirs grouped by the UTC day it finished (problems without a
        date: today). Reads the cluster only; the caller writes to the warehouse."""
        applications = self.applications(settings)
        today = datetime.now(UTC).date()
        by_day: dict[date, list[Deployment | Quarantined]] = defaultdict(list)
        for app in applications:
            for record in application_records(app, settings.argocd_environment_from):
                by_day[record_day(record) or today].append(record)
        return len(applications), dict(by_day)


SOURCE = ArgoCDSource()

"""Backstage: the catalog's Components, Groups and Users, who owns what, and who is in which team.

One snapshot per extract through ``GET {BACKSTAGE_URL}/api/catalog/entities/by-query``,
paged with ``pageInfo.nextCursor``. The cursor carries the query (filter, order, total),
so later pages never repeat ``filter``; ``limit`` and ``fields`` are not part of the
cursor and are sent again on every page, as Backstage's own CatalogClient does.

Mapping, in Backstage's semantics (shorthand refs resolve against the referring entity's
namespace; ``spec.owner`` and ``spec.memberOf``/``spec.parent`` default to kind Group,
``spec.members`` to kind User):

- every entity: ``entity_ref`` = ``kind:namespace/name`` lower-case, with its annotations
  (``github.com/project-slug``, ``argocd/app-name``, ``pagerduty.com/service-id``,
  ``opsgenie.com/service-id`` map events to components in SQL);
- ``owner_ref``: ``spec.owner``, else the ``ownedBy`` relation;
- ``parent_ref`` (groups): ``spec.parent``, else the ``childOf`` relation;
- memberships: User ``spec.memberOf`` and ``memberOf`` relations together with Group
  ``spec.members`` and ``hasMember`` relations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from ..config import Settings
from ..records import CatalogEntity, GroupMembership, Quarantined, Record, normalise_ref
from .base import ExtractContext, Source, SourceError
from .http import HttpClient, RetryPolicy

KINDS = ("component", "group", "user")
FIELDS = ",".join(
    (
        "kind",
        "metadata.name",
        "metadata.namespace",
        "metadata.title",
        "metadata.annotations",
        "spec.owner",
        "spec.type",
        "spec.lifecycle",
        "spec.parent",
        "spec.members",
        "spec.memberOf",
        "relations",
    )
)


def catalog_url(backstage_url: str) -> str:
    """The catalog API base: ``BACKSTAGE_URL`` plus ``/api/catalog`` (unless already there)."""
    base = backstage_url.rstrip("/")
    return base if base.endswith("/api/catalog") else base + "/api/catalog"


def entity_ref(entity: dict) -> str:
    metadata = entity.get("metadata") or {}
    namespace = metadata.get("namespace") or "default"
    return f"{entity['kind']}:{namespace}/{metadata['name']}".lower()


def _relation_targets(entity: dict, relation_type: str) -> list[str]:
    targets = []
    for relation in entity.get("relations") or []:
        if not isinstance(relation, dict) or relation.get("type") != relation_type:
            continue
        ref = relation.get("targetRef")
        target = relation.get("target")
        if not ref and isinstance(target, dict):  # older backends send only ``target``
            ref = (
                f"{target.get('kind')}:{target.get('namespace') or 'default'}/{target.get('name')}"
            )
        if ref:
            targets.append(str(ref).lower())
    return targets


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def entity_records(entity: dict) -> list[Record]:
    """One catalog item as its CatalogEntity and the memberships it states."""
    ref = entity_ref(entity)
    kind, _, rest = ref.partition(":")
    namespace, _, name = rest.partition("/")
    metadata = entity.get("metadata") or {}
    spec = entity.get("spec") or {}
    owners = [normalise_ref(o, "group", namespace) for o in _refs(spec.get("owner"))]
    owners = owners or _relation_targets(entity, "ownedBy")
    parent_ref = None
    if kind == "group":
        parents = [normalise_ref(p, "group", namespace) for p in _refs(spec.get("parent"))]
        parents = parents or _relation_targets(entity, "childOf")
        parent_ref = parents[0] if parents else None
    annotations = metadata.get("annotations") or {}
    records: list[Record] = [
        CatalogEntity(
            source="backstage",
            entity_ref=ref,
            kind=kind,
            namespace=namespace,
            name=name,
            title=metadata.get("title"),
            owner_ref=owners[0] if owners else None,
            parent_ref=parent_ref,
            spec_type=spec.get("type") if isinstance(spec.get("type"), str) else None,
            lifecycle=spec.get("lifecycle") if isinstance(spec.get("lifecycle"), str) else None,
            annotations={str(k): v for k, v in annotations.items()}
            if isinstance(annotations, dict)
            else {},
        )
    ]
    if kind == "user":
        groups = [normalise_ref(g, "group", namespace) for g in _refs(spec.get("memberOf"))]
        groups += _relation_targets(entity, "memberOf")
        records += [GroupMembership("backstage", group, ref) for group in dict.fromkeys(groups)]
    elif kind == "group":
        users = [normalise_ref(u, "user", namespace) for u in _refs(spec.get("members"))]
        users += _relation_targets(entity, "hasMember")
        records += [GroupMembership("backstage", ref, user) for user in dict.fromkeys(users)]
    return records


ACCEPT_HINT = (
    "if the catalog really shrank, accept it once: `dora-pipeline run --accept-catalog-shrink`, "
    "or in Dagster the run tag dora/accept_catalog_shrink=true "
    "(or the warehouse resource config accept_catalog_shrink: true)"
)
GUARDED_KINDS = ("component", "group")


def kind_counts(records: Iterable[Record | Quarantined]) -> dict[str, int]:
    """Components and groups in a snapshot (the kinds whose loss changes ownership)."""
    counts = dict.fromkeys(GUARDED_KINDS, 0)
    for record in records:
        if isinstance(record, CatalogEntity) and record.kind in counts:
            counts[record.kind] += 1
    return counts


def stored_kind_counts(warehouse_url: str) -> dict[str, int]:
    """Components and groups of the stored Backstage snapshot."""
    import psycopg

    counts = dict.fromkeys(GUARDED_KINDS, 0)
    with psycopg.connect(warehouse_url) as conn:
        for kind, count in conn.execute(
            """
            select kind, count(*) from dora_raw.catalog_entities
            where source = 'backstage' and kind = any(%s)
            group by kind
            """,
            (list(GUARDED_KINDS),),
        ):
            counts[kind] = count
    return counts


def shrink_refusal(stored: dict[str, int], new: dict[str, int], max_pct: float) -> str | None:
    """Why a snapshot must not replace the stored one (DESIGN §8), or None: it is empty,
    or it holds more than ``max_pct`` percent fewer components or groups. A catalog
    still loading after a Backstage restart looks exactly like this."""
    if not any(new.values()):
        return "the catalog returned no Components or Groups"
    for kind in GUARDED_KINDS:
        before, now = stored.get(kind, 0), new.get(kind, 0)
        if before and 100.0 * (before - now) / before > max_pct:
            return (
                f"the catalog has {now} {kind}s where the stored snapshot has {before} "
                f"({100.0 * (before - now) / before:.0f}% fewer, DORA_CATALOG_MAX_SHRINK_PCT is {max_pct:g}); "
                "a Backstage still loading its catalog after a restart looks like this"
            )
    return None


def guard_catalog(new: dict[str, int], stored: dict[str, int], ctx: ExtractContext) -> None:
    """Refuse a suspicious snapshot (``SourceError``, exit 4) unless the run accepts it."""
    refusal = shrink_refusal(stored, new, ctx.settings.catalog_max_shrink_pct)
    if refusal is None:
        return
    if not ctx.settings.accept_catalog_shrink:
        raise SourceError(f"backstage: refusing to replace the stored catalog: {refusal}; {ACCEPT_HINT}")
    ctx.log.warning("backstage: %s; accepted for this run (--accept-catalog-shrink)", refusal)


class BackstageSource(Source):
    """The Backstage catalog: components with their owners and mapping annotations, the
    group tree and group memberships. A snapshot: entities gone upstream are removed."""

    name = "backstage"
    writes = ("catalog_entities", "group_memberships")
    snapshot_tables = ("catalog_entities", "group_memberships")
    partitioned = False
    description = "Backstage catalog: components, groups, users, ownership and membership"

    def __init__(
        self,
        *,
        page_size: int = 500,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_base: float = 0.5,
        max_wait: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.page_size = page_size
        self.retry = RetryPolicy(timeout, max_retries, backoff_base, max_wait, sleep)

    def skip_reason(self, settings: Settings) -> str | None:
        if not settings.backstage_url:
            return "BACKSTAGE_URL is not set"
        return None

    def client(self, settings: Settings) -> HttpClient:
        headers = {"Accept": "application/json"}
        if settings.backstage_token:
            headers["Authorization"] = f"Bearer {settings.backstage_token.get()}"
        return self.retry.client(settings, catalog_url(settings.backstage_url), name="backstage", headers=headers)

    def entities(self, client: HttpClient) -> Iterable[dict]:
        """Every Component, Group and User, following ``nextCursor`` to the end."""
        params: list[tuple[str, Any]] = [("filter", f"kind={kind}") for kind in KINDS]
        params += [("limit", self.page_size), ("fields", FIELDS)]
        seen_cursors: set[str] = set()
        while True:
            page = client.get_json("entities/by-query", params=params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise SourceError("backstage: entities/by-query answered without an items list")
            yield from page["items"]
            cursor = (page.get("pageInfo") or {}).get("nextCursor")
            if not cursor:
                return
            if cursor in seen_cursors:
                raise SourceError(
                    "backstage: entities/by-query returned a cursor it had returned before"
                )
            seen_cursors.add(cursor)
            params = [("cursor", cursor), ("limit", self.page_size), ("fields", FIELDS)]

    def extract(self, day: date, ctx: ExtractContext) -> list[Record | Quarantined]:
        client = self.client(ctx.settings)
        entities: dict[str, Record | Quarantined] = {}
        memberships: dict[tuple[str, str], GroupMembership] = {}
        try:
            for entity in self.entities(client):
                try:
                    records = entity_records(entity)
                except (KeyError, TypeError, AttributeError) as exc:
                    key = f"entity {len(entities)}"
                    entities[key] = Quarantined(
                        "backstage",
                        "catalog_entities",
                        None,
                        f"payload: unreadable catalog entity ({type(exc).__name__}: {exc})",
                        entity,
                    )
                    continue
                for record in records:
                    if isinstance(record, GroupMembership):
                        memberships[(record.group_ref, record.user_ref)] = record
                    else:
                        entities[record.entity_ref] = record
        finally:
            client.session.close()
        guard_catalog(kind_counts(entities.values()), stored_kind_counts(ctx.warehouse_url), ctx)
        ctx.log.info(
            "backstage: %d entities, %d group memberships in %d requests",
            len(entities),
            len(memberships),
            client.requests_sent,
        )
        return [entities[k] for k in sorted(entities)] + [
            memberships[k] for k in sorted(memberships)
        ]


SOURCE = BackstageSource()

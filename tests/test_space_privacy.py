"""The whole published schema, scanned: no row is derived from fewer than k survey
respondents, and no column holds a respondent pseudonym, a user ref, a raw login or free
text (survey blockers, PR and incident titles).

Data: the synthetic organisation over two monthly surveys (its PR authors and reviewers
are user refs), the hand-built survey trees of test_space_survey (k-1, k, a parent with
one small child, a cascade), and PRs whose authors and reviewers are GitHub logins, one
mapped to a catalog user by annotation and one unknown.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from test_space_survey import organisation, survey_responses

from dora_pipeline.pipeline import build_and_publish, extract_partition
from dora_pipeline.records import CatalogEntity, PullRequest
from dora_pipeline.sources import get_source
from dora_pipeline.warehouse import Warehouse

from builders import AS_OF, load, member
from conftest import settings_with

SCORE_COLUMN = re.compile(r"satisf|flow_state|blocker")
IDENTITY_COLUMN = re.compile(r"respondent$|user|login|author|reviewer|blocker|title|pseudonym")


def _published(conn) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = defaultdict(list)
    for table, column in conn.execute(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'dora_metrics' order by table_name, ordinal_position"
    ):
        tables[table].append(column)
    return tables


def _forbidden(conn) -> tuple[set[str], set[str]]:
    """(values no published cell may equal, values no published cell may contain)."""
    def col(query: str) -> set[str]:
        return {r[0] for r in conn.execute(query) if r[0]}

    pseudonyms = col("select respondent from dora_raw.survey_responses")
    free_text = (col("select blockers_text from dora_raw.survey_responses")
                 | col("select title from dora_raw.pull_requests")
                 | col("select title from dora_raw.incidents"))
    user_refs = (col("select entity_ref from dora_raw.catalog_entities where kind = 'user'")
                 | col("select user_ref from dora_raw.group_memberships"))
    logins = col("select author from dora_raw.pull_requests") | col("select first_reviewer from dora_raw.pull_requests")
    assert pseudonyms and free_text and user_refs and logins
    equals = pseudonyms | free_text | user_refs | logins | {r.split("/", 1)[1] for r in user_refs}
    # Substrings only for values long enough not to occur by chance ("p1" is in "...p1-api").
    return equals, {v for v in equals if len(v) >= 8}


def _latest_group_per_respondent(conn) -> dict[str, dict[str, str]]:
    """survey -> respondent -> the group of their latest response, straight from dora_raw."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for survey, respondent, group in conn.execute(
        "select survey_id, respondent, group_ref from dora_raw.survey_responses "
        "order by survey_id, respondent, submitted_at"
    ):
        out[survey][respondent] = group
    return out


def _ancestors(conn) -> dict[str, list[str]]:
    parent = dict(conn.execute(
        "select entity_ref, parent_ref from dora_raw.catalog_entities where kind = 'group'").fetchall())
    chains = {}
    for group in parent:
        chain, seen = [], group
        while seen is not None and seen not in chain:
            chain.append(seen)
            seen = parent.get(seen)
        chains[group] = chain
    return chains


def _github_logins() -> list:
    merged = datetime(2025, 3, 4, 12, tzinfo=UTC)
    return [
        CatalogEntity("test", "user:default/jane", "user", "default", "jane",
                      annotations={"github.com/user-login": "jane-gh"}),
        member("team-a", "jane"),
        *(PullRequest("test", "acme/payments-api", 900_000 + i, opened_at=merged - timedelta(hours=5),
                      merged_at=merged, first_review_at=merged - timedelta(hours=1), author=author,
                      first_reviewer=reviewer, title=f"Fix the thing, ticket {i}")
          for i, (author, reviewer) in enumerate((("jane-gh", "octo-unknown"), ("octo-unknown", "jane-gh")))),
    ]


def test_published_schema_discloses_no_small_group_and_no_identity(warehouse, settings):
    synthetic = Warehouse(settings_with(
        settings, DORA_SYNTHETIC="true", DORA_SYNTHETIC_TEAMS="3", DORA_SYNTHETIC_SERVICES="6",
        DORA_SYNTHETIC_DAYS="40", DORA_SYNTHETIC_END="2025-03-05"))
    source = get_source("synthetic")
    for offset in range(40):
        extract_partition(synthetic, source, date(2025, 3, 5) - timedelta(days=offset))
    load(warehouse, organisation(), source="catalog")
    load(warehouse, survey_responses(), day=date(2025, 3, 10))
    load(warehouse, _github_logins(), day=date(2025, 3, 4))
    build_and_publish(warehouse, AS_OF)
    k = settings.survey_min_respondents

    with warehouse.connection() as conn:
        tables = _published(conn)
        assert {"team_space_survey", "team_space_activity_weekly", "lead_time_breakdown",
                "lead_time_breakdown_weekly", "improvement_candidates"} <= set(tables)

        # 1. No column is named for an identity or free text; survey scores live in one table.
        for table, columns in tables.items():
            assert not [c for c in columns if IDENTITY_COLUMN.search(c)], table
            if table != "team_space_survey":
                assert not [c for c in columns if SCORE_COLUMN.search(c)], table

        # 2. No published cell holds a pseudonym, a user ref, a login or free text.
        equals, contains = _forbidden(conn)
        cells = 0
        for table, columns in tables.items():
            select = ", ".join(f'"{c}"::text' for c in columns)
            for row in conn.execute(f'select {select} from dora_metrics."{table}"'):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    cells += 1
                    assert value not in equals, f"{table}.{column} holds {value!r}"
                    leaked = [v for v in contains if v in value]
                    assert not leaked, f"{table}.{column} contains {leaked[0]!r}"
        assert cells > 2_000

        # 3. Survey rows: respondents recomputed from dora_raw; scores only at >= k; and no
        #    published group minus its published descendants leaves 1..k-1 respondents.
        latest = _latest_group_per_respondent(conn)
        ancestors = _ancestors(conn)
        truth: dict[tuple[str, str], int] = defaultdict(int)
        for survey, groups in latest.items():
            for group in groups.values():
                for counted in ancestors.get(group, [group]):
                    truth[survey, counted] += 1
        cur = conn.execute("select * from dora_metrics.team_space_survey")
        names = [c.name for c in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        scores = [c for c in names if SCORE_COLUMN.search(c)]
        published: dict[str, set[str]] = defaultdict(set)
        assert len(rows) > 20 and {r["suppressed"] for r in rows} == {True, False}
        for r in rows:
            assert r["respondents"] == truth.get((r["survey_id"], r["group_ref"]), 0), r
            if r["suppressed"]:
                assert all(r[c] is None for c in scores), r
            else:
                assert r["respondents"] >= k and r["satisfaction_mean"] is not None, r
                published[r["survey_id"]].add(r["group_ref"])
        assert {r["suppression_reason"] for r in rows} == {None, "fewer_than_k", "complementary"}
        for survey, groups in published.items():
            for parent in groups:
                below = [g for g in groups if g != parent and parent in ancestors.get(g, [])]
                maximal = [g for g in below if not any(o != g and o in ancestors[g] for o in below)]
                residual = truth[survey, parent] - sum(truth[survey, g] for g in maximal)
                assert residual == 0 or residual >= k, (survey, parent, residual)

        # 4. Improvement candidates quote survey counts, never scores.
        for (evidence,) in conn.execute("select evidence::text from dora_metrics.improvement_candidates"):
            assert not SCORE_COLUMN.search(evidence)

"""docs/sources/*.md against the one declaration of every setting (``SETTINGS`` in
dora_pipeline/config.py): each variable a page's configuration table lists is declared,
with the default the page states; a "(default N)" in the prose is the declared default;
and every setting of the source is named on its page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dora_pipeline.config import SETTINGS, Secret, Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sources"
DECLARED = {s.env: s for s in SETTINGS}
DEFAULTS = Settings.from_env({})
# The settings of each source: its prefix, and the few named otherwise.
PREFIXES = {
    "argocd": ("ARGOCD_",),
    "backstage": ("BACKSTAGE_",),
    "github": ("GITHUB_",),
    "opsgenie": ("OPSGENIE_",),
    "pagerduty": ("PAGERDUTY_",),
    "survey": ("SURVEY_",),
    "webhook": ("DORA_WEBHOOK_",),
}
ALSO = {
    "argocd": {"KUBERNETES_SERVICE_HOST"},
    "backstage": {"DORA_CATALOG_MAX_SHRINK_PCT"},
    "survey": {"DORA_PSEUDONYM_KEY"},
}
PAGES = sorted(PREFIXES)


def _page(source: str) -> str:
    return (DOCS / f"{source}.md").read_text(encoding="utf-8")


def configuration_rows(text: str) -> list[tuple[list[str], str]]:
    """(variables, default cell) of each row of the page's settings table: the first
    table headed "| variable | meaning | default |"."""
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith("| variable | meaning | default |")),
        None,
    )
    rows = []
    for line in lines[start + 2 :] if start is not None else []:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]), cells[-1]))
    return rows


def default_problem(env: str, stated: str) -> str | None:
    """Why ``stated`` (a page's default cell, or its part for ``env``) is not the declared
    default of ``env``, or None when it is."""
    value = getattr(DEFAULTS, DECLARED[env].attr)
    shown = value.get() if isinstance(value, Secret) else value
    literal = stated.strip("`")
    if isinstance(shown, bool):
        return None if literal == str(shown).lower() else f"declared {str(shown).lower()}"
    if isinstance(shown, int | float):
        try:
            return None if float(literal) == shown else f"declared {shown:g}"
        except ValueError:
            return f"declared {shown:g}"
    if not shown:
        # Unset or empty: the page says so in words, never as a literal value.
        if stated.startswith("`") or re.match(r"\d", stated):
            return "declared unset/empty"
        return None
    text = ",".join(shown) if isinstance(shown, tuple) else str(shown)
    return None if stated == f"`{text}`" else f"declared `{text}`"


def page_problems(source: str, text: str) -> list[str]:
    problems = []
    rows = configuration_rows(text)
    if not rows:
        problems.append(f"docs/sources/{source}.md: no configuration table")
    for names, cell in rows:
        if not names:
            problems.append(f"docs/sources/{source}.md: a settings row names no variable: {cell!r}")
            continue
        parts = [p.strip() for p in cell.split(", ")] if len(names) > 1 else [cell]
        if len(parts) != len(names):
            problems.append(
                f"docs/sources/{source}.md: {', '.join(names)}: one default per variable"
            )
            continue
        for env, stated in zip(names, parts, strict=True):
            if env not in DECLARED:
                problems.append(f"docs/sources/{source}.md: {env} is not a declared setting")
            elif (why := default_problem(env, stated)) is not None:
                problems.append(f"docs/sources/{source}.md: {env} default {stated!r}, {why}")
    for env, stated in re.findall(r"`([A-Z][A-Z0-9_]+)` \(default ([^)]+)\)", text):
        if env not in DECLARED:
            problems.append(f"docs/sources/{source}.md: {env} is not a declared setting")
        elif (why := default_problem(env, stated)) is not None:
            problems.append(f"docs/sources/{source}.md: {env} (default {stated}), {why}")
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    own = {env for env in DECLARED if env.startswith(PREFIXES[source])} | ALSO.get(source, set())
    problems += [f"docs/sources/{source}.md never names {env}" for env in sorted(own - named)]
    return problems


@pytest.mark.parametrize("source", PAGES)
def test_a_source_page_names_its_settings_with_their_declared_defaults(source):
    assert not page_problems(source, _page(source))


def test_every_source_setting_belongs_to_a_page():
    owned = {
        env for env in DECLARED if env.startswith(tuple(p for ps in PREFIXES.values() for p in ps))
    }
    owned |= set().union(*ALSO.values())
    source_settings = {s.env for s in SETTINGS if s.group == "sources"}
    assert source_settings <= owned, sorted(source_settings - owned)


def test_a_wrong_default_an_unknown_variable_and_a_missing_setting_are_named():
    page = _page("argocd")
    wrong = page.replace("| `180` |", "| `120` |").replace(
        "`ARGOCD_NAMESPACES`", "`ARGOCD_NAMESPACE`"
    )
    assert page_problems("argocd", wrong) == [
        "docs/sources/argocd.md: ARGOCD_NAMESPACE is not a declared setting",
        "docs/sources/argocd.md: ARGOCD_POLL_SECONDS default '`120`', declared 180",
        "docs/sources/argocd.md never names ARGOCD_NAMESPACES",
    ]
    http = "| `DORA_HTTP_TIMEOUT_SECONDS`, `DORA_HTTP_MAX_RETRIES` | timeout; retries | 30, 3 |"
    assert page_problems(
        "backstage",
        _page("backstage").replace(
            "| `DORA_HTTP_TIMEOUT_SECONDS`, `DORA_HTTP_MAX_RETRIES` | per-request timeout; retries | 30, 5 |",
            http,
        ),
    ) == ["docs/sources/backstage.md: DORA_HTTP_MAX_RETRIES default '3', declared 5"]
    assert default_problem("GITHUB_TOKEN", "`ghp_x`") == "declared unset/empty"
    assert default_problem("SURVEY_TABLE", "`public.answers`") == "declared `dora.survey_responses`"

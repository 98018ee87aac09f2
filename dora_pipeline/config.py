"""Configuration from environment variables (the contract of DESIGN §4).

Every setting is declared once, as a field of the frozen ``Settings`` below: its type
is the field's annotation, its default the field's default, and ``setting(...)``
attached to it gives the variable's name, bounds, extra check and the line the docs
show. ``Settings.from_env`` reads them all from that one declaration, and the tables of
docs/configuration.md are generated from it (``python -m dora_pipeline.config
docs/configuration.md``; tests/test_configuration_doc.py fails when they drift).
Nothing deeper in the code reads ``os.environ``. Secrets are kept in ``Secret``
wrappers whose ``repr``/``str`` never show the value, so a settings object can be
logged or attached to an exception without leaking anything.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Secret:
    """A secret string that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# Integers reach the models as PostgreSQL ``int`` session settings: larger ones would
# fail there, as a model error, instead of here naming the variable.
INT_MAX = 2**31 - 1

# A check takes the variable's name and its non-empty, stripped value, and returns the
# value to keep or raises ConfigError naming the variable.
Check = Callable[[str, str], str]


@dataclass(frozen=True)
class Setting:
    """One environment variable. ``attr``, ``kind`` and ``default`` come from the
    ``Settings`` field it is attached to; the rest is declared with ``setting(...)``."""

    env: str
    doc: str  # one line of markdown for docs/configuration.md
    group: str  # the table of docs/configuration.md it is listed in
    minimum: float = 0
    maximum: float | None = None  # numbers: INT_MAX unless declared
    check: Check | None = None  # strings and secrets: validation or normalisation
    unset: str = "unset"  # what an empty default means, for the docs
    attr: str = ""
    kind: Any = None
    default: Any = None

    def read(self, env: Mapping[str, str]) -> Any:
        raw = env.get(self.env, "").strip()
        if not raw:
            return self.default
        return _PARSERS[self.kind](self, raw)


def setting(env: str, default: Any, doc: str, *, group: str, **bounds: Any) -> Any:
    """A ``Settings`` field read from ``env``, ``default`` when unset or blank."""
    return field(default=default, metadata={"setting": Setting(env, doc, group, **bounds)})


# The tables of docs/configuration.md, in the order they appear there.
GROUPS = ("warehouse", "orchestration", "rules", "synthetic", "sources")
_warehouse, _orchestration, _rules, _synthetic, _sources = (
    partial(setting, group=g) for g in GROUPS
)


def _int(spec: Setting, raw: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,30}", raw):
        raise ConfigError(f"{spec.env} must be a whole number, got {raw[:40]!r}")
    value = int(raw)
    minimum = int(spec.minimum)
    maximum = int(spec.maximum) if spec.maximum is not None else INT_MAX
    if not minimum <= value <= maximum:
        raise ConfigError(f"{spec.env} must be between {minimum} and {maximum}, got {raw}")
    return value


def _float(spec: Setting, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{spec.env} must be a number, got {raw!r}") from None
    minimum = float(spec.minimum)
    if not minimum <= value <= INT_MAX:
        raise ConfigError(
            f"{spec.env} must be a number between {minimum} and {INT_MAX}, got {raw[:40]}"
        )
    # Only percentages have a lower ceiling.
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(
            f"{spec.env} must be a percentage between {minimum:g} and {spec.maximum:g}, "
            f"got {value:g}"
        )
    return value


def _bool(spec: Setting, raw: str) -> bool:
    raw = raw.lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{spec.env} must be true or false, got {raw!r}")


def _str(spec: Setting, raw: str) -> str:
    return spec.check(spec.env, raw) if spec.check else raw


_PARSERS: dict[Any, Callable[[Setting, str], Any]] = {
    int: _int,
    float: _float,
    bool: _bool,
    str: _str,
    Secret: lambda spec, raw: Secret(_str(spec, raw)),
    Path: lambda spec, raw: Path(_str(spec, raw)).expanduser(),
    tuple[str, ...]: lambda spec, raw: tuple(p.strip() for p in raw.split(",") if p.strip()),
}


def _matching(pattern: str, wording: str) -> Check:
    def check(name: str, value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ConfigError(f"{name} must be {wording}, got {value!r}")
        return value

    check.wording = wording  # type: ignore[attr-defined]  # the docs' value column
    return check


def _regex(name: str, value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ConfigError(f"{name} is not a valid regex ({exc}): {value!r}") from None
    return value


def _base_url(name: str, value: str) -> str:
    return value.rstrip("/")


_regex.wording = "a regular expression"  # type: ignore[attr-defined]
_base_url.wording = "a URL"  # type: ignore[attr-defined]


def _webhook_url(name: str, value: str) -> str:
    # The URL is a credential (Slack's carries its token): the error never echoes it.
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _database_url(name: str, value: str) -> str:
    """Checked for syntax before anything connects. The messages never quote the
    value: any fragment of it may be part of the password."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if "://" in value:
        userinfo = value.split("://", 1)[1].rpartition("@")[0]
        if "@" in userinfo:
            raise ConfigError(
                f"{name} has an unencoded '@' in its user or password: "
                "percent-encode it as %40 (the value is not shown: it holds the password)"
            )
    try:
        conninfo_to_dict(value)
    except ProgrammingError:
        raise ConfigError(
            f"{name} is not a valid connection string (postgresql://user:password@host/db "
            "with special characters percent-encoded, or key=value pairs with a value containing "
            "spaces in single quotes); the value is not shown: it holds the password"
        ) from None
    return value


def _github_app_key(name: str, value: str) -> str:
    """The PEM itself, or the path of a file holding it. Secret stores often hand PEMs
    over with literal ``\\n``; those become newlines. Errors never quote the value: it
    may be (part of) the key."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").strip() + "\n"
    try:
        text = Path(value).expanduser().read_text()
    except (OSError, UnicodeDecodeError, ValueError):
        raise ConfigError(
            f"{name} is neither a PEM private key (-----BEGIN ...) nor a readable file"
        ) from None
    if "-----BEGIN" not in text:
        raise ConfigError(f"{name} names a file that holds no PEM private key")
    return text


_number = _matching(r"[0-9]+", "a number")
_memory = _matching(r"[1-9][0-9]*(kB|MB|GB)", "a PostgreSQL memory size such as 64MB")
def _date(name: str, value: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise ConfigError(f"{name} must be a date YYYY-MM-DD, got {value[:40]!r}")


_date.wording = "a date YYYY-MM-DD"  # type: ignore[attr-defined]
_role = _matching(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", "a plain Postgres role name")
_table = _matching(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", "[schema.]table")
_environment_from = _matching(
    r"namespace|project|label:[A-Za-z0-9][A-Za-z0-9_./-]{0,316}",
    "namespace, project or label:<key>",
)


@dataclass(frozen=True)
class Settings:
    database_url: Secret = _warehouse(
        "DORA_DATABASE_URL",
        Secret(""),
        "warehouse PostgreSQL URL (14+)",
        check=_database_url,
        unset="unset: the embedded server under `$DORA_HOME/pgdata` (database `dora`, unix socket only)",
    )
    home: Path = _warehouse(
        "DORA_HOME", Path(".dora"), "local state: embedded pgdata, generated pseudonym key"
    )
    production_environments: str = _warehouse(
        "DORA_PRODUCTION_ENVIRONMENTS",
        r"(?i)^(prod|production)$",
        "regex (PostgreSQL ARE, valid in Python too; checked by the warehouse at start, exit 2 "
        "otherwise); a matching environment is production",
        check=_regex,
    )
    incident_window_hours: int = _warehouse(
        "DORA_INCIDENT_WINDOW_HOURS",
        24,
        "how long after a deploy an incident is blamed on it",
        minimum=1,
    )
    survey_min_respondents: int = _warehouse(
        "DORA_SURVEY_MIN_RESPONDENTS",
        5,
        "k: below this, survey results are suppressed",
        minimum=1,
    )
    activity_min_authors: int = _warehouse(
        "DORA_ACTIVITY_MIN_AUTHORS",
        3,
        "a team-week of PR activity with fewer distinct authors publishes counts only",
        minimum=1,
    )
    reader_role: str = _warehouse(
        "DORA_READER_ROLE",
        "dora_reader",
        "role granted USAGE + SELECT on `dora_metrics` only; created NOLOGIN; operators `GRANT` "
        "it to Backstage's login role",
        check=_role,
    )
    reader_password: Secret = _warehouse(
        "DORA_READER_PASSWORD", Secret(""), "makes the reader role LOGIN with this password"
    )
    pseudonym_key: Secret = _warehouse(
        "DORA_PSEUDONYM_KEY",
        Secret(""),
        "key of the HMAC pseudonyms of survey respondents; keep it stable",
        unset="generated once in `$DORA_HOME/pseudonym.key`",
    )
    partitions_start: str = _warehouse(
        "DORA_PARTITIONS_START",
        "2025-01-01",
        "first daily partition of the Dagster extract assets",
        check=_date,
    )
    model_work_mem: str = _warehouse(
        "DORA_MODEL_WORK_MEM",
        "64MB",
        "PostgreSQL `work_mem` for each model build (sorts for the medians)",
        check=_memory,
    )
    model_threads: int = _warehouse(
        "DORA_MODEL_THREADS",
        2,
        "models `dora-pipeline run` builds at once, each on its own connection, once their "
        "inputs are built (1: one after another; the Dagster job builds them in order)",
        minimum=1,
        maximum=16,
    )
    http_timeout_seconds: float = _warehouse(
        "DORA_HTTP_TIMEOUT_SECONDS",
        30.0,
        "HTTP client timeout of one request, for every vendor source",
        minimum=1,
    )
    http_max_retries: int = _warehouse(
        "DORA_HTTP_MAX_RETRIES", 5, "HTTP client retry budget, for every vendor source"
    )

    # Orchestration (dora_pipeline/defs/schedules.py, sensors.py; docs/deploy.md)
    lookback_days: int = _orchestration(
        "DORA_LOOKBACK_DAYS",
        3,
        "the nightly run re-extracts this many days before yesterday (PRs, incidents and survey "
        "rows change after the fact)",
    )
    alert_webhook_url: Secret = _orchestration(
        "DORA_ALERT_WEBHOOK_URL",
        Secret(""),
        'run-failure alerts as Slack-compatible JSON (`{"text": ...}`); a secret (Slack\'s URL '
        "carries its token)",
        check=_webhook_url,
        unset="unset: off",
    )
    dagster_url: str = _orchestration(
        "DORA_DAGSTER_URL", "", "the Dagster UI's base URL, for links in alerts", check=_base_url
    )

    # Improvement-candidate rules (docs/published-schema.md): each compares a component
    # or group with its own history, never with other teams.
    rule_recent_days: int = _rules(
        "DORA_RULE_RECENT_DAYS", 30, "the recent period compared", minimum=1
    )
    rule_baseline_days: int = _rules(
        "DORA_RULE_BASELINE_DAYS", 60, "the baseline period before it", minimum=1
    )
    rule_min_sample: int = _rules(
        "DORA_RULE_MIN_SAMPLE",
        5,
        "least deployments or PRs in each period for a rate or median rule",
        minimum=1,
    )
    rule_min_incidents: int = _rules(
        "DORA_RULE_MIN_INCIDENTS",
        2,
        "least resolved incidents in each period for `slow_restore`",
        minimum=1,
    )
    rule_review_wait_hours: float = _rules(
        "DORA_RULE_REVIEW_WAIT_HOURS",
        24.0,
        "fires when the median wait for a first review reaches it",
    )
    rule_change_failure_pct: float = _rules(
        "DORA_RULE_CHANGE_FAILURE_PCT", 15.0, "fires when the change failure rate reaches it",
        maximum=100,
    )
    rule_restore_minutes: float = _rules(
        "DORA_RULE_RESTORE_MINUTES", 1440.0, "fires when the median time to restore reaches it"
    )
    rule_low_deploys_per_week: float = _rules(
        "DORA_RULE_LOW_DEPLOYS_PER_WEEK",
        2.0,
        "fires when there are fewer deploys a week than this while the median PR changes at "
        "least `DORA_RULE_LARGE_PR_LINES` lines",
    )
    rule_large_pr_lines: int = _rules(
        "DORA_RULE_LARGE_PR_LINES", 400, "see `DORA_RULE_LOW_DEPLOYS_PER_WEEK`"
    )
    rule_lead_time_coverage_pct: float = _rules(
        "DORA_RULE_LEAD_TIME_COVERAGE_PCT",
        50.0,
        "fires when the share of deployments linked to a PR is below it",
        maximum=100,
    )
    rule_survey_response_pct: float = _rules(
        "DORA_RULE_SURVEY_RESPONSE_PCT", 60.0, "fires when the survey response rate is below it",
        maximum=100,
    )
    rule_trend_ratio: float = _rules(
        "DORA_RULE_TREND_RATIO",
        1.5,
        "worsening by this factor makes the severity `high`",
        minimum=1,
    )

    synthetic: bool = _synthetic(
        "DORA_SYNTHETIC", False, "turn the synthetic source on (`demo` does it for you)"
    )
    synthetic_seed: int = _synthetic("DORA_SYNTHETIC_SEED", 42, "seed of the generator")
    synthetic_teams: int = _synthetic(
        "DORA_SYNTHETIC_TEAMS",
        6,
        "teams asked for; a trunk-based team with two services (direct changes, no PRs) comes "
        "on top",
        minimum=2,
    )
    synthetic_services: int = _synthetic(
        "DORA_SYNTHETIC_SERVICES", 24, "services asked for, shared among the teams", minimum=4
    )
    synthetic_days: int = _synthetic("DORA_SYNTHETIC_DAYS", 120, "days of history", minimum=1)
    synthetic_end: str = _synthetic(
        "DORA_SYNTHETIC_END", "", "last day with events", check=_date, unset="today (UTC)"
    )

    github_token: Secret = _sources(
        "GITHUB_TOKEN",
        Secret(""),
        "[github](sources/github.md) token",
        unset="off without token or app",
    )
    github_orgs: tuple[str, ...] = _sources(
        "GITHUB_ORGS", (), "[github](sources/github.md) organisations to read, every repository"
    )
    github_repos: tuple[str, ...] = _sources(
        "GITHUB_REPOS", (), "[github](sources/github.md) repositories to read (`owner/name`)"
    )
    github_api_url: str = _sources(
        "GITHUB_API_URL",
        "https://api.github.com",
        "[github](sources/github.md) API base URL",
        check=_base_url,
    )
    # GitHub App authentication (instead of GITHUB_TOKEN): the app's id, its PEM private
    # key (read from the file when GITHUB_APP_PRIVATE_KEY names one), and the
    # installation id, found per organisation or repository when empty.
    github_app_id: str = _sources(
        "GITHUB_APP_ID",
        "",
        "[github](sources/github.md#authentication-a-github-app-or-a-token): GitHub App "
        "authentication instead of a token, the app's id. Set, the app is used even if "
        "`GITHUB_TOKEN` is also set",
        check=_number,
        unset="unset: `GITHUB_TOKEN`",
    )
    github_app_private_key: Secret = _sources(
        "GITHUB_APP_PRIVATE_KEY",
        Secret(""),
        "the GitHub App's PEM private key: the key itself, `\\n`-escaped or not, or a file path",
        check=_github_app_key,
    )
    github_app_installation_id: str = _sources(
        "GITHUB_APP_INSTALLATION_ID",
        "",
        "the GitHub App's installation",
        check=_number,
        unset="unset: found per organisation or repository",
    )

    backstage_url: str = _sources(
        "BACKSTAGE_URL",
        "",
        "[backstage](sources/backstage.md) base URL",
        check=_base_url,
        unset="unset: off",
    )
    backstage_token: Secret = _sources(
        "BACKSTAGE_TOKEN", Secret(""), "[backstage](sources/backstage.md) token"
    )
    # A catalog snapshot with this many percent fewer components or groups than the
    # stored one is refused (DESIGN §8), unless the run accepts it (--accept-catalog-shrink).
    catalog_max_shrink_pct: float = _sources(
        "DORA_CATALOG_MAX_SHRINK_PCT",
        20.0,
        "a catalog snapshot with this many percent fewer components or groups than the stored "
        "one (or none at all) is refused, exit 4, the stored catalog kept (a Backstage still "
        "loading after a restart); accept a real shrink once with `run --accept-catalog-shrink`, "
        "the Dagster run tag `dora/accept_catalog_shrink=true` or the warehouse resource config "
        "`accept_catalog_shrink: true` ([backstage](sources/backstage.md))",
        maximum=100,
    )

    survey_database_url: Secret = _sources(
        "SURVEY_DATABASE_URL",
        Secret(""),
        "[survey](sources/survey.md) database URL",
        check=_database_url,
        unset="unset: off",
    )
    survey_table: str = _sources(
        "SURVEY_TABLE",
        "dora.survey_responses",
        "[survey](sources/survey.md) table",
        check=_table,
    )
    survey_csv_dir: str = _sources(
        "SURVEY_CSV_DIR", "", "[survey](sources/survey.md) folder of CSV exports"
    )

    argocd_kubeconfig: str = _sources(
        "ARGOCD_KUBECONFIG",
        "",
        "[argocd](sources/argocd.md) kubeconfig file; `off` (or `none`, `disabled`) turns "
        "ArgoCD off, even in a pod",
        unset="unset: in-cluster config in a pod, else off",
    )
    argocd_namespaces: tuple[str, ...] = _sources(
        "ARGOCD_NAMESPACES",
        (),
        "[argocd](sources/argocd.md) namespaces of the Applications",
        unset="unset: all",
    )
    argocd_environment_from: str = _sources(
        "ARGOCD_ENVIRONMENT_FROM",
        "namespace",
        "environment of an Application: `namespace` (destination), `project` or `label:<key>`",
        check=_environment_from,
    )
    argocd_poll_seconds: int = _sources(
        "ARGOCD_POLL_SECONDS",
        180,
        "interval of the polling sensor that records history before it rolls off",
        minimum=10,
    )
    kubernetes_service_host: str = _sources(
        "KUBERNETES_SERVICE_HOST",
        "",
        "set by Kubernetes in every pod: ArgoCD then uses the in-cluster config",
    )

    pagerduty_token: Secret = _sources(
        "PAGERDUTY_TOKEN",
        Secret(""),
        "[pagerduty](sources/pagerduty.md) token",
        unset="unset: off",
    )
    pagerduty_api_url: str = _sources(
        "PAGERDUTY_API_URL",
        "https://api.pagerduty.com",
        "[pagerduty](sources/pagerduty.md) API base URL",
        check=_base_url,
    )
    pagerduty_change_field: str = _sources(
        "PAGERDUTY_CHANGE_FIELD",
        "",
        "dotted path of the incident field that says whether a change caused it, e.g. "
        "`incident_type.name`",
        unset="unset: unknown (NULL)",
    )
    opsgenie_api_key: Secret = _sources(
        "OPSGENIE_API_KEY",
        Secret(""),
        "[opsgenie](sources/opsgenie.md) API key",
        unset="unset: off",
    )
    opsgenie_api_url: str = _sources(
        "OPSGENIE_API_URL",
        "https://api.opsgenie.com",
        "[opsgenie](sources/opsgenie.md) API base URL",
        check=_base_url,
    )

    webhook_secret: Secret = _sources(
        "DORA_WEBHOOK_SECRET",
        Secret(""),
        "[webhook](sources/webhook.md) HMAC secret (16+ characters)",
        unset="unset: the receiver refuses to start",
    )
    webhook_max_body_bytes: int = _sources(
        "DORA_WEBHOOK_MAX_BODY_BYTES", 65536, "largest accepted webhook body", minimum=1024
    )

    # Not from the environment: set for one run by --accept-catalog-shrink, the run tag
    # or the resource config (see DORA_CATALOG_MAX_SHRINK_PCT).
    accept_catalog_shrink: bool = False

    @property
    def production_regex(self) -> re.Pattern[str]:
        return re.compile(self.production_environments)

    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction and for tests that hunt leaks.
        A multi-line secret (the GitHub App's PEM key) also gives each of its lines, so
        a fragment of it is masked too."""
        values = [
            getattr(self, f.name).get()
            for f in fields(self)
            if isinstance(getattr(self, f.name), Secret) and getattr(self, f.name)
        ]
        lines = [
            line.strip()
            for value in values
            if "\n" in value
            for line in value.splitlines()
            if len(line.strip()) >= 16 and not line.startswith("-----")
        ]
        return values + lines

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = {spec.attr: spec.read(env) for spec in SETTINGS}
        _check_github_app(values)
        return cls(**values)


def _declared() -> tuple[Setting, ...]:
    types = get_type_hints(Settings)
    return tuple(
        replace(f.metadata["setting"], attr=f.name, kind=types[f.name], default=f.default)
        for f in fields(Settings)
        if "setting" in f.metadata
    )


# Every setting, in the order of the docs' tables.
SETTINGS = _declared()


def _check_github_app(values: Mapping[str, Any]) -> None:
    """The GITHUB_APP_* settings go together: an app id needs its key and the other way
    round, and an installation id needs both."""
    if bool(values["github_app_id"]) != bool(values["github_app_private_key"]):
        missing = "GITHUB_APP_PRIVATE_KEY" if values["github_app_id"] else "GITHUB_APP_ID"
        raise ConfigError(
            "GitHub App authentication needs GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY; "
            f"{missing} is not set"
        )
    if values["github_app_installation_id"] and not values["github_app_id"]:
        raise ConfigError(
            "GITHUB_APP_INSTALLATION_ID is set without GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"
        )


# -- docs/configuration.md ------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _value_kind(spec: Setting) -> str:
    if spec.kind is bool:
        return "true or false"
    if spec.kind is int:
        return f"whole number ≥ {spec.minimum:g}"
    if spec.kind is float:
        if spec.maximum is not None:
            return f"number {spec.minimum:g} to {spec.maximum:g}"
        return f"number ≥ {spec.minimum:g}"
    if spec.kind is Secret:
        return "secret"
    if spec.kind is Path:
        return "path"
    if spec.kind == tuple[str, ...]:
        return "comma-separated list"
    return getattr(spec.check, "wording", "text")


def documented_default(spec: Setting) -> str:
    """The default as the docs show it."""
    value = spec.default
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}"
    if not value:
        return spec.unset
    return f"`{value}`"


def settings_table(group: str) -> str:
    rows = [
        f"| `{s.env}` | {_cell(s.doc)} | {_cell(_value_kind(s)).replace('<', '&lt;')} "
        f"| {_cell(documented_default(s))} |"
        for s in SETTINGS
        if s.group == group
    ]
    return "\n".join(["| variable | meaning | value | default |", "|---|---|---|---|", *rows])


_TABLE = re.compile(r"(<!-- settings: (\w+) -->\n).*?(<!-- end settings -->)", re.S)


def with_settings_tables(doc: str) -> str:
    """``doc`` with each block between ``<!-- settings: <group> -->`` and
    ``<!-- end settings -->`` replaced by that group's table."""
    return _TABLE.sub(lambda m: f"{m[1]}{settings_table(m[2])}\n{m[3]}", doc)


if __name__ == "__main__":
    # python -m dora_pipeline.config docs/configuration.md: regenerate its tables.
    for path in map(Path, sys.argv[1:]):
        path.write_text(with_settings_tables(path.read_text(encoding="utf-8")), encoding="utf-8")

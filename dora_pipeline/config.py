"""Configuration from environment variables (the contract of DESIGN §4).

Every setting is read here, once, into a frozen ``Settings``; nothing deeper in
the code reads ``os.environ``. Secrets are kept in ``Secret`` wrappers whose
``repr``/``str`` never show the value, so a settings object can be logged or
attached to an exception without leaking anything.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path


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


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


# Integers reach the models as PostgreSQL ``int`` session settings: larger ones would
# fail there, as a model error, instead of here naming the variable.
INT_MAX = 2**31 - 1


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int = INT_MAX) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[+-]?[0-9]{1,30}", raw):
        raise ConfigError(f"{name} must be a whole number, got {raw[:40]!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {raw}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= INT_MAX:
        raise ConfigError(f"{name} must be a number between {minimum} and {INT_MAX}, got {raw[:40]}")
    return value


def _percent(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value > 100:
        raise ConfigError(f"{name} must be a percentage between 0 and 100, got {value:g}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _argocd_environment_from(value: str) -> str:
    if value in ("namespace", "project") or re.fullmatch(r"label:[A-Za-z0-9][A-Za-z0-9_./-]{0,316}", value):
        return value
    raise ConfigError(
        f"ARGOCD_ENVIRONMENT_FROM must be namespace, project or label:<key>, got {value!r}"
    )


def _memory(value: str, name: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)", value):
        raise ConfigError(f"{name} must be a PostgreSQL memory size such as 64MB, got {value!r}")
    return value


def _webhook_url(value: str, name: str) -> str:
    # The URL is a credential (Slack's carries its token): the error never echoes it.
    if value and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _database_url(value: str) -> str:
    """DORA_DATABASE_URL, checked for syntax before anything connects. The messages
    never quote the value: any fragment of it may be part of the password."""
    if not value:
        return value
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    if "://" in value:
        userinfo = value.split("://", 1)[1].rpartition("@")[0]
        if "@" in userinfo:
            raise ConfigError(
                "DORA_DATABASE_URL has an unencoded '@' in its user or password: "
                "percent-encode it as %40 (the value is not shown: it holds the password)"
            )
    try:
        conninfo_to_dict(value)
    except ProgrammingError:
        raise ConfigError(
            "DORA_DATABASE_URL is not a valid connection string (postgresql://user:password@host/db "
            "with special characters percent-encoded, or key=value pairs with a value containing "
            "spaces in single quotes); the value is not shown: it holds the password"
        ) from None
    return value


def _github_app_key(value: str) -> str:
    """GITHUB_APP_PRIVATE_KEY: the PEM itself, or the path of a file holding it. Secret
    stores often hand PEMs over with literal ``\\n``; those become newlines. Errors never
    quote the value: it may be (part of) the key."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n").strip() + "\n"
    try:
        text = Path(value).expanduser().read_text()
    except (OSError, UnicodeDecodeError, ValueError):
        raise ConfigError(
            "GITHUB_APP_PRIVATE_KEY is neither a PEM private key (-----BEGIN ...) "
            "nor a readable file"
        ) from None
    if "-----BEGIN" not in text:
        raise ConfigError("GITHUB_APP_PRIVATE_KEY names a file that holds no PEM private key")
    return text


def _github_app(s) -> dict:
    """The GITHUB_APP_* settings; app id and key go together, ids are numbers."""
    app_id, key = s("GITHUB_APP_ID"), s("GITHUB_APP_PRIVATE_KEY")
    installation = s("GITHUB_APP_INSTALLATION_ID")
    for name, value in (("GITHUB_APP_ID", app_id), ("GITHUB_APP_INSTALLATION_ID", installation)):
        if value and not value.isdigit():
            raise ConfigError(f"{name} must be a number, got {value!r}")
    if bool(app_id) != bool(key):
        missing = "GITHUB_APP_PRIVATE_KEY" if app_id else "GITHUB_APP_ID"
        raise ConfigError(
            "GitHub App authentication needs GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY; "
            f"{missing} is not set"
        )
    if installation and not app_id:
        raise ConfigError(
            "GITHUB_APP_INSTALLATION_ID is set without GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"
        )
    return {
        "github_app_id": app_id,
        "github_app_private_key": Secret(_github_app_key(key) if key else ""),
        "github_app_installation_id": installation,
    }


DEFAULT_PRODUCTION_ENVIRONMENTS = r"(?i)^(prod|production)$"


@dataclass(frozen=True)
class Settings:
    database_url: Secret = field(default_factory=lambda: Secret(""))
    home: Path = Path(".dora")
    production_environments: str = DEFAULT_PRODUCTION_ENVIRONMENTS
    incident_window_hours: int = 24
    survey_min_respondents: int = 5
    activity_min_authors: int = 3
    # Improvement-candidate rules (DORA_RULE_*, docs/published-schema.md): each
    # compares a component or group with its own history, never with other teams.
    rule_recent_days: int = 30
    rule_baseline_days: int = 60
    rule_min_sample: int = 5
    rule_min_incidents: int = 2
    rule_review_wait_hours: float = 24.0
    rule_change_failure_pct: float = 15.0
    rule_restore_minutes: float = 1440.0
    rule_low_deploys_per_week: float = 2.0
    rule_large_pr_lines: int = 400
    rule_lead_time_coverage_pct: float = 50.0
    rule_survey_response_pct: float = 60.0
    rule_trend_ratio: float = 1.5
    reader_role: str = "dora_reader"
    reader_password: Secret = field(default_factory=lambda: Secret(""))
    pseudonym_key: Secret = field(default_factory=lambda: Secret(""))
    synthetic: bool = False
    synthetic_seed: int = 42
    synthetic_teams: int = 6
    synthetic_services: int = 24
    synthetic_days: int = 120
    synthetic_end: str = ""  # YYYY-MM-DD; empty: today (UTC)
    partitions_start: str = "2025-01-01"

    github_token: Secret = field(default_factory=lambda: Secret(""))
    github_orgs: tuple[str, ...] = ()
    github_repos: tuple[str, ...] = ()
    github_api_url: str = "https://api.github.com"
    # GitHub App authentication (instead of GITHUB_TOKEN): the app's id, its PEM private
    # key (read from the file when GITHUB_APP_PRIVATE_KEY names one), and the
    # installation id, found per organisation or repository when empty.
    github_app_id: str = ""
    github_app_private_key: Secret = field(default_factory=lambda: Secret(""))
    github_app_installation_id: str = ""

    argocd_kubeconfig: str = ""
    argocd_namespaces: tuple[str, ...] = ()
    argocd_environment_from: str = "namespace"  # namespace | project | label:<key>
    argocd_poll_seconds: int = 180
    kubernetes_service_host: str = ""  # set by Kubernetes in every pod: in-cluster config

    # Orchestration (dora_pipeline/schedules.py, sensors.py; docs/deploy.md)
    lookback_days: int = 3  # the nightly run re-reads this many days before yesterday
    alert_webhook_url: Secret = field(default_factory=lambda: Secret(""))  # run-failure alerts; off when empty
    dagster_url: str = ""  # the Dagster UI's base URL, for links in alerts

    pagerduty_token: Secret = field(default_factory=lambda: Secret(""))
    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_change_field: str = ""  # dotted path into the incident, e.g. incident_type.name
    opsgenie_api_key: Secret = field(default_factory=lambda: Secret(""))
    opsgenie_api_url: str = "https://api.opsgenie.com"

    backstage_url: str = ""
    backstage_token: Secret = field(default_factory=lambda: Secret(""))
    # A catalog snapshot with this many percent fewer components or groups than the
    # stored one is refused (DESIGN §8), unless the run accepts it (--accept-catalog-shrink).
    catalog_max_shrink_pct: float = 20.0
    accept_catalog_shrink: bool = False

    survey_database_url: Secret = field(default_factory=lambda: Secret(""))
    survey_table: str = "dora.survey_responses"
    survey_csv_dir: str = ""

    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    webhook_max_body_bytes: int = 65536

    model_work_mem: str = "64MB"
    http_timeout_seconds: float = 30.0
    http_max_retries: int = 5

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

        def s(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        prod = s("DORA_PRODUCTION_ENVIRONMENTS", DEFAULT_PRODUCTION_ENVIRONMENTS)
        try:
            re.compile(prod)
        except re.error as exc:
            raise ConfigError(f"DORA_PRODUCTION_ENVIRONMENTS is not a valid regex ({exc}): {prod!r}") from None
        reader_role = s("DORA_READER_ROLE", "dora_reader")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]{0,62}", reader_role):
            raise ConfigError(f"DORA_READER_ROLE must be a plain Postgres role name, got {reader_role!r}")
        survey_table = s("SURVEY_TABLE", "dora.survey_responses")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", survey_table):
            raise ConfigError(f"SURVEY_TABLE must be [schema.]table, got {survey_table!r}")
        start = s("DORA_PARTITIONS_START", "2025-01-01")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", start):
            raise ConfigError(f"DORA_PARTITIONS_START must be a date YYYY-MM-DD, got {start!r}")
        return cls(
            database_url=Secret(_database_url(s("DORA_DATABASE_URL"))),
            home=Path(s("DORA_HOME", ".dora")).expanduser(),
            production_environments=prod,
            incident_window_hours=_int(env, "DORA_INCIDENT_WINDOW_HOURS", 24, minimum=1),
            survey_min_respondents=_int(env, "DORA_SURVEY_MIN_RESPONDENTS", 5, minimum=1),
            activity_min_authors=_int(env, "DORA_ACTIVITY_MIN_AUTHORS", 3, minimum=1),
            rule_recent_days=_int(env, "DORA_RULE_RECENT_DAYS", 30, minimum=1),
            rule_baseline_days=_int(env, "DORA_RULE_BASELINE_DAYS", 60, minimum=1),
            rule_min_sample=_int(env, "DORA_RULE_MIN_SAMPLE", 5, minimum=1),
            rule_min_incidents=_int(env, "DORA_RULE_MIN_INCIDENTS", 2, minimum=1),
            rule_review_wait_hours=_float(env, "DORA_RULE_REVIEW_WAIT_HOURS", 24.0),
            rule_change_failure_pct=_float(env, "DORA_RULE_CHANGE_FAILURE_PCT", 15.0),
            rule_restore_minutes=_float(env, "DORA_RULE_RESTORE_MINUTES", 1440.0),
            rule_low_deploys_per_week=_float(env, "DORA_RULE_LOW_DEPLOYS_PER_WEEK", 2.0),
            rule_large_pr_lines=_int(env, "DORA_RULE_LARGE_PR_LINES", 400),
            rule_lead_time_coverage_pct=_float(env, "DORA_RULE_LEAD_TIME_COVERAGE_PCT", 50.0),
            rule_survey_response_pct=_float(env, "DORA_RULE_SURVEY_RESPONSE_PCT", 60.0),
            rule_trend_ratio=_float(env, "DORA_RULE_TREND_RATIO", 1.5, minimum=1.0),
            reader_role=reader_role,
            reader_password=Secret(s("DORA_READER_PASSWORD")),
            pseudonym_key=Secret(s("DORA_PSEUDONYM_KEY")),
            synthetic=_bool(env, "DORA_SYNTHETIC", False),
            synthetic_seed=_int(env, "DORA_SYNTHETIC_SEED", 42),
            synthetic_teams=_int(env, "DORA_SYNTHETIC_TEAMS", 6, minimum=2),
            synthetic_services=_int(env, "DORA_SYNTHETIC_SERVICES", 24, minimum=4),
            synthetic_days=_int(env, "DORA_SYNTHETIC_DAYS", 120, minimum=1),
            synthetic_end=s("DORA_SYNTHETIC_END"),
            partitions_start=start,
            github_token=Secret(s("GITHUB_TOKEN")),
            github_orgs=_split(s("GITHUB_ORGS")),
            github_repos=_split(s("GITHUB_REPOS")),
            github_api_url=s("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            **_github_app(s),
            argocd_kubeconfig=s("ARGOCD_KUBECONFIG"),
            argocd_namespaces=_split(s("ARGOCD_NAMESPACES")),
            argocd_environment_from=_argocd_environment_from(s("ARGOCD_ENVIRONMENT_FROM", "namespace")),
            argocd_poll_seconds=_int(env, "ARGOCD_POLL_SECONDS", 180, minimum=10),
            kubernetes_service_host=s("KUBERNETES_SERVICE_HOST"),
            lookback_days=_int(env, "DORA_LOOKBACK_DAYS", 3),
            alert_webhook_url=Secret(_webhook_url(s("DORA_ALERT_WEBHOOK_URL"), "DORA_ALERT_WEBHOOK_URL")),
            dagster_url=s("DORA_DAGSTER_URL").rstrip("/"),
            pagerduty_token=Secret(s("PAGERDUTY_TOKEN")),
            pagerduty_api_url=s("PAGERDUTY_API_URL", "https://api.pagerduty.com").rstrip("/"),
            pagerduty_change_field=s("PAGERDUTY_CHANGE_FIELD"),
            opsgenie_api_key=Secret(s("OPSGENIE_API_KEY")),
            opsgenie_api_url=s("OPSGENIE_API_URL", "https://api.opsgenie.com").rstrip("/"),
            backstage_url=s("BACKSTAGE_URL").rstrip("/"),
            backstage_token=Secret(s("BACKSTAGE_TOKEN")),
            catalog_max_shrink_pct=_percent(env, "DORA_CATALOG_MAX_SHRINK_PCT", 20.0),
            survey_database_url=Secret(s("SURVEY_DATABASE_URL")),
            survey_table=survey_table,
            survey_csv_dir=s("SURVEY_CSV_DIR"),
            webhook_secret=Secret(s("DORA_WEBHOOK_SECRET")),
            webhook_max_body_bytes=_int(env, "DORA_WEBHOOK_MAX_BODY_BYTES", 65536, minimum=1024),
            model_work_mem=_memory(s("DORA_MODEL_WORK_MEM", "64MB"), "DORA_MODEL_WORK_MEM"),
            http_timeout_seconds=float(_int(env, "DORA_HTTP_TIMEOUT_SECONDS", 30, minimum=1)),
            http_max_retries=_int(env, "DORA_HTTP_MAX_RETRIES", 5),
        )


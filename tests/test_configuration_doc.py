"""The one declaration of every setting (``Settings`` in dora_pipeline/config.py) against
docs/configuration.md and against its own parsing: every documented variable is
declared and every declared one documented, with the default the code really uses;
bounds, types and secrecy come from the declaration alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dora_pipeline.config import (
    INT_MAX,
    SETTINGS,
    ConfigError,
    Secret,
    Settings,
    with_settings_tables,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
NUMBERS = [s for s in SETTINGS if s.kind in (int, float)]


def _documented_rows() -> dict[str, list[str]]:
    """variable -> the other cells of its row, from every table of the doc."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and (name := re.fullmatch(r"`([A-Z][A-Z0-9_]*)`", cells[0])):
            assert name[1] not in rows, f"{name[1]} is documented twice"
            rows[name[1]] = cells[1:]
    return rows


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    return value.get() if isinstance(value, Secret) else str(value)


def test_the_doc_tables_are_the_ones_generated_from_the_declaration():
    text = DOC.read_text(encoding="utf-8")
    assert text.count("<!-- settings: ") == text.count("<!-- end settings -->") == 5
    assert with_settings_tables(text) == text, (
        "docs/configuration.md is out of date: run "
        "python -m dora_pipeline.config docs/configuration.md"
    )


def test_the_doc_lists_exactly_the_declared_variables_with_the_defaults_in_use():
    rows = _documented_rows()
    assert set(rows) == {s.env for s in SETTINGS}
    unset = Settings.from_env({})
    for spec in SETTINGS:
        default = rows[spec.env][-1].replace("\\|", "|")
        value = getattr(unset, spec.attr)
        if isinstance(value, bool):
            assert default == str(value).lower(), spec.env
        elif isinstance(value, int | float):
            assert float(default) == value, spec.env
        elif value:
            assert default == f"`{_as_text(value)}`", spec.env
        else:
            assert default and not default.startswith("`"), spec.env


def test_every_variable_the_doc_names_is_declared_or_read_by_dagster_itself():
    mentioned = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", DOC.read_text(encoding="utf-8")))
    dagster_yaml = (ROOT / "deploy" / "dagster.yaml").read_text(encoding="utf-8")
    read_by_dagster = set(re.findall(r"env: ([A-Z0-9_]+)", dagster_yaml))
    assert read_by_dagster and mentioned - {s.env for s in SETTINGS} <= read_by_dagster


def test_the_declaration_names_each_variable_and_attribute_once():
    assert len({s.env for s in SETTINGS}) == len({s.attr for s in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.default], ids=lambda s: s.env)
def test_each_default_passes_its_own_validation(spec):
    assert getattr(Settings.from_env({spec.env: _as_text(spec.default)}), spec.attr) == spec.default


@pytest.mark.parametrize("spec", NUMBERS, ids=lambda s: s.env)
def test_numbers_outside_their_declared_bounds_are_refused_naming_the_variable(spec):
    ceiling = spec.maximum if spec.maximum is not None else INT_MAX
    for value in (spec.minimum - 1, ceiling + 1):
        text = str(float(value)) if spec.kind is float else str(int(value))
        with pytest.raises(ConfigError, match=f"^{spec.env} must be "):
            Settings.from_env({spec.env: text})
    assert getattr(Settings.from_env({spec.env: str(ceiling)}), spec.attr) == ceiling


def test_the_http_timeout_is_read_as_the_number_it_is_declared():
    assert Settings.from_env({"DORA_HTTP_TIMEOUT_SECONDS": "2.5"}).http_timeout_seconds == 2.5
    with pytest.raises(ConfigError, match="DORA_HTTP_TIMEOUT_SECONDS must be a number between 1"):
        Settings.from_env({"DORA_HTTP_TIMEOUT_SECONDS": "0.5"})


def test_every_credential_is_declared_a_secret_and_never_shown():
    """The doc's promise: *_TOKEN, *_KEY, *_SECRET, *_PASSWORD and database URLs are
    held in a wrapper that never prints its value."""
    credentials = [
        s for s in SETTINGS if re.search(r"_(TOKEN|KEY|SECRET|PASSWORD)$|DATABASE_URL$", s.env)
    ]
    assert all(s.kind is Secret for s in credentials), [
        s.env for s in credentials if s.kind is not Secret
    ]
    valid = {
        "DORA_DATABASE_URL": "postgresql://dora:Hidden-{}@db.example/dora",
        "SURVEY_DATABASE_URL": "postgresql://dora:Hidden-{}@db.example/dora",
        "DORA_ALERT_WEBHOOK_URL": "https://hooks.example.com/Hidden-{}",
        "GITHUB_APP_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\\nHidden-{}\\n-----END PRIVATE KEY-----",
    }
    secrets = [s for s in SETTINGS if s.kind is Secret]
    env = {s.env: valid.get(s.env, "Hidden-{}").format(s.attr) for s in secrets}
    settings = Settings.from_env({**env, "GITHUB_APP_ID": "1"})
    for spec in secrets:
        assert f"Hidden-{spec.attr}" in getattr(settings, spec.attr).get()
    assert "Hidden" not in repr(settings) + str(settings)

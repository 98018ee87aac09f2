"""Dagster instance storage for local use: under ``$DORA_HOME/dagster``.

``dagster dev`` started without ``DAGSTER_HOME`` reads ``dagster.yaml`` from the current
directory. The repository root's ``dagster.yaml`` names the classes below, so a fresh
checkout keeps its runs, schedules and logs next to the embedded warehouse
(``$DORA_HOME``, default ``.dora``) with no configuration at all. Production uses
``deploy/dagster.yaml`` (Postgres through dagster-postgres) instead; docs/deploy.md.

The paths are resolved to absolute ones from the environment in every process
(webserver, daemon, code server, run workers), so they agree wherever each one starts.
"""

from __future__ import annotations

from pathlib import Path

from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

from ..config import Settings


def local_dagster_dir() -> Path:
    """``$DORA_HOME/dagster``, absolute."""
    return (Settings.from_env().home / "dagster").resolve()


class LocalStorage(DagsterSqliteStorage):
    """Runs, event logs and schedules in SQLite under ``$DORA_HOME/dagster/storage``."""

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> LocalStorage:
        return cls.from_local(str(local_dagster_dir() / "storage"), inst_data=inst_data)


class LocalComputeLogs(LocalComputeLogManager):
    """Captured stdout/stderr of runs under ``$DORA_HOME/dagster/logs``."""

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> LocalComputeLogs:
        return cls(str(local_dagster_dir() / "logs"), inst_data=inst_data)

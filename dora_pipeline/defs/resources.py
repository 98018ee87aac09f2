"""Dagster resources: the warehouse, configured from the DORA_* environment (DESIGN §4)."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from dagster import ConfigurableResource
from pydantic import Field

from ..config import Settings
from ..warehouse import Warehouse


class WarehouseResource(ConfigurableResource):
    """The warehouse and the pipeline settings.

    Settings come from the environment, the same contract as the CLI; the fields here
    only override them for a deployment or a test.
    """

    database_url: str | None = Field(
        default=None,
        description="Warehouse URL; default DORA_DATABASE_URL, else the embedded server under DORA_HOME.",
    )
    home: str | None = Field(default=None, description="Override DORA_HOME (local state).")
    accept_catalog_shrink: bool = Field(
        default=False,
        description="Accept a catalog snapshot that shrank by more than DORA_CATALOG_MAX_SHRINK_PCT (one run).",
    )

    def settings(self) -> Settings:
        env = {}
        if self.database_url:
            env["DORA_DATABASE_URL"] = self.database_url
        if self.home:
            env["DORA_HOME"] = self.home
        if not env:
            return Settings.from_env()
        import os

        return Settings.from_env({**os.environ, **env})

    # Warehouse URLs this process has migrated: a run migrates once, whichever step runs
    # first (a model can come before any extract, e.g. dora_marts/benchmarks).
    _migrated: ClassVar[set[str]] = set()

    def warehouse(self) -> Warehouse:
        settings = self.settings()
        if self.accept_catalog_shrink:
            settings = replace(settings, accept_catalog_shrink=True)
        return Warehouse(settings)

    def migrated_warehouse(self) -> Warehouse:
        """The warehouse, its migrations applied once per process."""
        wh = self.warehouse()
        if wh.url not in self._migrated:
            wh.migrate()
            self._migrated.add(wh.url)
        return wh

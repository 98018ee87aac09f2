"""The Dagster code location: ``dagster dev`` from the repository root loads ``defs``."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job

from .assets import build_assets
from .resources import WarehouseResource

assets = build_assets()

models_job = define_asset_job(
    "build_and_publish",
    selection=AssetSelection.groups("staging", "intermediate", "marts", "published"),
    description="Rebuild every SQL model from dora_raw and publish dora_metrics.",
)

defs = Definitions(
    assets=assets,
    jobs=[models_job],
    resources={"warehouse": WarehouseResource()},
)

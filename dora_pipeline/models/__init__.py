"""The SQL models: ``engine.py`` parses the files in ``sql_models/`` (sqlglot), orders them
into a graph, builds them (in full or incrementally) and publishes the marts to
``dora_metrics``. A new published column goes in a mart's SQL, not here."""

from __future__ import annotations

from .engine import (
    DIRTY_SINCE,
    MODEL_PARAMETERS,
    GrainViolation,
    Model,
    ModelError,
    ModelGraph,
    PublishError,
    build_all,
    build_graph,
    build_model,
    load_models,
    model_parameters,
    parse_model,
    publish,
)

__all__ = [
    "DIRTY_SINCE",
    "MODEL_PARAMETERS",
    "GrainViolation",
    "Model",
    "ModelError",
    "ModelGraph",
    "PublishError",
    "build_all",
    "build_graph",
    "build_model",
    "load_models",
    "model_parameters",
    "parse_model",
    "publish",
]

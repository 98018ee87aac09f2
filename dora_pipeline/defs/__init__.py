"""Dagster only: the code location ``dora_pipeline.defs.definitions`` (attribute ``defs``)
and what it is built from: ``assets.py`` (extract, model and published assets),
``checks.py`` (asset checks wrapping ``dora_pipeline/quality``), ``schedules.py``,
``sensors.py``, ``resources.py`` (the warehouse resource) and ``instance.py`` (the local
Dagster instance's storage). The run itself is ``dora_pipeline/pipeline.py``, shared with
the command line."""

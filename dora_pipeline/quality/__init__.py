"""Data quality: ``checks.py`` holds the check logic, each check a function of a
warehouse connection returning a plain ``Outcome`` (no Dagster types);
``dora_pipeline/defs/checks.py`` runs them as Dagster asset checks."""

"""The demo: ``organisation.py`` generates a deterministic synthetic organisation (teams,
services, pull requests, deploys, incidents, survey answers) that ``sources/synthetic.py``
extracts like a vendor (``DORA_SYNTHETIC=true``, ``dora-pipeline demo``)."""

"""What people read: ``html.py`` (``dora-pipeline report``: the published data, the
matplotlib charts as inline SVG, the page rendered from ``templates/`` with Jinja2
autoescaping) and ``tables.py`` (the terminal tables ``dora-pipeline run`` prints).
A new chart goes in ``html.py``'s ``Charts`` and the template."""

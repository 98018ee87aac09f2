"""DORA + SPACE developer-experience metrics pipeline."""

__version__ = "0.1.0"

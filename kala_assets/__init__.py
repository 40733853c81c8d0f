"""KALA's Dagster layer: ``dagster ... -m kala_assets`` loads ``defs`` from here."""

from kala_assets.definitions import defs

__all__ = ["defs"]

"""Dagster config classes derived from kala_lib's dataclasses, so each setting is declared once.

A step's Dagster config (what the UI's launchpad and ``-c configs/*.yaml`` set) takes its fields,
types and defaults from the domain dataclass that uses them; the Dagster layer adds only what the
asset itself needs, and descriptions for the launchpad.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Optional

import dagster as dg
import pydantic
from pydantic import Field


def _optional(hint: Any) -> Any:
    """``X | None`` as ``Optional[X]`` (the spelling Dagster's config schema reads)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return Optional[args[0]]
    return hint


def config_class(name: str, source: type, exclude: set[str], descriptions: dict[str, str] | None = None,
                 extra: dict[str, tuple[Any, Any]] | None = None, doc: str = "") -> type[dg.Config]:
    """A ``dg.Config`` with every field of dataclass ``source`` but ``exclude`` (same type and
    default), described by ``descriptions``, plus ``extra`` fields {name: (type, Field(...))}."""
    hints = typing.get_type_hints(source)
    descriptions = descriptions or {}
    unknown = set(descriptions) - {f.name for f in dataclasses.fields(source)} - set(extra or {})
    if unknown:
        raise ValueError(f"descriptions for fields {source.__name__} does not have: {sorted(unknown)}")
    fields: dict[str, tuple[Any, Any]] = {}
    for spec in dataclasses.fields(source):
        if spec.name in exclude:
            continue
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            raise ValueError(f"{source.__name__}.{spec.name} has no default: exclude it (the asset sets it)")
        fields[spec.name] = (_optional(hints[spec.name]), Field(default=default, description=descriptions.get(spec.name)))
    fields.update(extra or {})
    model = pydantic.create_model(name, __base__=dg.Config, **fields)
    model.__doc__ = doc or f"Settings of {source.__name__}, as Dagster config."
    return model

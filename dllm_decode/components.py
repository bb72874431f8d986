"""What every axis component (rule, block schedule, early commit, cache, attention, loop) shares.

A component is a frozen dataclass of its options. `Sampler` routes each user option to the one
component that declares it, injects the shared `DecodeConfig` fields a component names in
`config_fields`, and lets every component veto combinations it cannot serve in `check`.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .config import DecodeConfig
    from .loop import DecodePlan


class Component:
    name: ClassVar[str] = ""
    config_fields: ClassVar[tuple[str, ...]] = ()  # DecodeConfig fields passed in, not user-routed

    @classmethod
    def option_names(cls) -> list[str]:
        """Options a user may set on this component (its dataclass fields minus injected config fields)."""
        if not is_dataclass(cls):
            return []
        return [f.name for f in fields(cls) if f.name not in cls.config_fields]

    @classmethod
    def build(cls, config: "DecodeConfig", options: dict[str, Any]) -> "Component":
        return cls(**{name: getattr(config, name) for name in cls.config_fields}, **options)

    def check(self, plan: "DecodePlan", config: "DecodeConfig", given: frozenset[str]) -> None:
        """Raise ValueError if this component cannot work with the rest of `plan` (or with options `given`)."""

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}


def pick(table: dict[str, type[Component]], axis: str, name: str) -> type[Component]:
    if name not in table:
        raise ValueError(f"`{axis}` must be one of {sorted(table)}, got {name!r}")
    return table[name]

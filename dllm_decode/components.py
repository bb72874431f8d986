"""What every axis component (rule, block schedule, early commit, cache, attention, loop) shares.

A component is a frozen dataclass of its options. `Sampler` routes each user option to the one
component that declares it, injects the shared `DecodeConfig` fields a component names in
`config_fields`, lets every component veto combinations it cannot serve in `check`, and models it
cannot decode (or resolve options from the model) in `fit`.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .config import DecodeConfig
    from .loop import DecodePlan
    from .models.adapter import DiffusionLM


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

    def fit(self, model: "DiffusionLM", given: frozenset[str]) -> dict[str, Any]:
        """Raise ValueError if this component cannot decode `model`; return the options it resolves from
        `model` among those the user left unset (`given` names the ones set), e.g. delimiters from its tokenizer."""
        return {}

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}


def pick(table: dict[str, type[Component]], axis: str, name: str) -> type[Component]:
    if name not in table:
        raise ValueError(f"`{axis}` must be one of {sorted(table)}, got {name!r}")
    return table[name]

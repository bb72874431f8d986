"""Components given as objects: `Sampler(rule, cache=DualCache(refresh=4))` reads as
`Sampler("threshold", cache="dual", refresh=4)`.

An instance unpacks into its axis name plus the options it sets (fields that differ from their
defaults, and fields without one), so the object form and the name form build the same plan and show
the same `Sampler.config`. A keyword option that contradicts an instance's field raises, naming both.
An instance of a class its registry does not hold (a user's own subclass) is kept as the class to build.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from .cache import CACHES
from .components import Component, Registry, set_fields
from .kernels import ATTENTION
from .plan import LOOPS
from .samplers.base import CommitRule
from .samplers.blocks import BLOCKS
from .samplers.early import EARLY_COMMITS
from .samplers.registry import PRESETS, Preset, resolve
from .samplers.revision import REVISIONS

# in the order the plan's parts are built (and so validated)
AXES: dict[str, Registry] = {"blocks": BLOCKS, "cache": CACHES, "attention": ATTENTION, "loop": LOOPS,
                             "early_commit": EARLY_COMMITS, "revision": REVISIONS}


def _unpack(axis: str, part: Component, options: dict[str, Any], into: dict[str, Any]) -> None:
    """Add `part`'s options to `into`; a keyword in `options` that disagrees with one of its fields raises."""
    for key in (f.name for f in fields(part) if f.init) if is_dataclass(part) else ():
        if key in options and options[key] != getattr(part, key):
            raise ValueError(f"`{key}={options[key]!r}` conflicts with `{axis}={part!r}`, whose `{key}` is "
                             f"{getattr(part, key)!r}; set `{key}` in one place")
    into.update(set_fields(part))


def unpack_axes(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, type[Component]]]:
    """Options with every component instance replaced by its name plus its set fields, and the classes
    to build for instances their axis registry does not hold under their name."""
    flat = {key: value for key, value in options.items() if not isinstance(value, Component)}
    custom: dict[str, type[Component]] = {}
    for axis, part in options.items():
        if not isinstance(part, Component):
            continue
        registry = AXES.get(axis)
        if registry is None or not isinstance(part, registry.base):
            kind = f"a name or a {registry.base.__name__}" if registry is not None else "a plain value"
            raise ValueError(f"`{axis}` must be {kind}, got a {type(part).__name__} instance; pass it as the "
                             f"axis it belongs to (`{type(part).name or axis}`)")
        flat[axis] = part.name
        _unpack(axis, part, options, flat)
        if registry.get(part.name, None) is not type(part):
            custom[axis] = type(part)
    return flat, custom


def resolve_rule(rule: str | CommitRule, options: dict[str, Any]) -> tuple[str, Preset, dict[str, Any]]:
    """(sampler name, preset, options) for a sampler name or a CommitRule instance.

    An instance takes the preset of its class whose rule defaults it agrees with, preferring presets that
    set no other axis (then the one named like the rule); with none, a bare preset named after the rule.
    """
    if isinstance(rule, str):
        return (*resolve(rule), options)
    if not isinstance(rule, CommitRule):
        raise ValueError(f"`name` must be a sampler name or a CommitRule instance, got {type(rule).__name__}; "
                         f"e.g. Sampler(\"threshold\") or Sampler(Threshold(threshold=0.9))")
    merged = dict(options)
    _unpack("rule", rule, options, merged)
    matching = [(bool(preset.defaults), name != rule.name, name) for name, preset in PRESETS.items()
                if preset.rule is type(rule) and all(getattr(rule, k) == v for k, v in preset.rule_defaults.items())]
    if matching:
        name = min(matching)[2]
        return name, PRESETS[name], merged
    return rule.name or type(rule).__name__, Preset(type(rule)), merged

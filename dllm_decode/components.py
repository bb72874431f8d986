"""What every axis component (rule, block schedule, early commit, cache, attention, loop, revision) shares.

A component is a frozen dataclass of its options. `Sampler` routes each user option to the one
component that declares it, injects the shared `DecodeConfig` fields a component names in
`config_fields`, and lets every component veto option combinations it cannot serve in `check` and
resolve options from the model in `fit`. Which parts (and models) a component works with is not
checked by the component: it declares what it `offers` and `needs` (capability names), and
`compat.py` compares the declarations of a whole plan in one place.

Each axis keeps one `Registry` (name -> class) beside its base class; its members register
themselves explicitly with `@REGISTRY.register`, and the axis package imports every member module
by name, so a member that fails to import fails loudly. Components see the composed plan and the
model through the two protocols below, not through `plan.py` or `models/`, so that every module a
plan is built from sits below `plan.py` in the import graph (no cycles; `tests/test_architecture.py` checks it).
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .config import DecodeConfig


@dataclass(frozen=True)
class Need:
    """A capability a component requires of the other parts of the plan, or of the model.

    `axis` names where it is read: a plan axis ("rule", "blocks", "early_commit", "cache", "attention", "loop",
    "revision"; every part on it must declare `capability`) or "model" (a fact of the model, see
    `compat.model_capabilities`).
    `present=False` turns it into a refusal: no part there may declare it. `reason` and `fix` go in the message.
    """

    axis: str
    capability: str
    reason: str
    fix: str
    present: bool = True


class Component:
    name: ClassVar[str] = ""
    config_fields: ClassVar[tuple[str, ...]] = ()  # DecodeConfig fields passed in, not user-routed
    # what this component offers the rest of a plan and what it needs of it (names: `compat.CAPABILITIES`);
    # `compat.check_plan` / `compat.check_model` compare them, so no component inspects another's type
    offers: ClassVar[frozenset[str]] = frozenset()
    needs: ClassVar[tuple[Need, ...]] = ()

    def capabilities(self) -> frozenset[str]:
        """`offers`, plus those that hold only for some option values (e.g. `remasking="random"`)."""
        return self.offers

    @classmethod
    def option_names(cls) -> list[str]:
        """Options a user may set on this component (its dataclass fields minus injected config fields)."""
        if not is_dataclass(cls):
            return []
        return [f.name for f in fields(cls) if f.name not in cls.config_fields]

    @classmethod
    def build(cls, config: "DecodeConfig", options: dict[str, Any]) -> "Component":
        return cls(**{name: getattr(config, name) for name in cls.config_fields}, **options)

    def check(self, plan: "PlanView", config: "DecodeConfig", given: frozenset[str]) -> None:
        """Raise ValueError if this component cannot work with the rest of `plan` (or with options `given`)."""

    def fit(self, model: "ModelFacts", given: frozenset[str]) -> dict[str, Any]:
        """Raise ValueError if this component cannot decode `model`; return the options it resolves from
        `model` among those the user left unset (`given` names the ones set), e.g. delimiters from its tokenizer."""
        return {}

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}


class PlanView(Protocol):
    """What a component may read of the composed plan (`plan.DecodePlan` is the one implementation).

    The parts are typed as `Component` here because the axis base classes sit below `plan.py`.
    """

    rule: Component
    blocks: Component
    early: tuple[Component, ...]
    cache: Component
    attention: Component
    loop: Component | None
    revision: Component
    steps_per_block: int | None
    cfg_scale: float

    def total_steps(self, gen_length: int) -> int: ...


class ModelFacts(Protocol):
    """What a policy may read of the model (`models.adapter.DiffusionLM` implements it): facts, never a forward."""

    name: str
    tokenizer: Any
    mask_id: int
    eos_ids: tuple[int, ...]
    block_size: int | None  # the model's diffusion block (block-diffusion models), else None
    shift: int  # 1: position i's logits predict token i + 1 (Dream-style), else 0
    autoregressive: bool  # a causal LM (a verification target), not a denoiser
    supports_cache: bool  # its layers read and write a KV cache
    native: bool  # one of our architectures: its forward takes positions, a 4-D attention mask, a cache


def set_fields(part: object) -> dict[str, Any]:
    """The fields of a dataclass instance a user would pass by keyword: those without a default or off it."""
    if not is_dataclass(part):
        return {}
    chosen = {}
    for f in fields(part):
        if not f.init:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        value = getattr(part, f.name)
        if default is MISSING or (value is not default and value != default):
            chosen[f.name] = value
    return chosen


C = TypeVar("C", bound=type)
_MISSING = object()


class Registry(dict, Generic[C]):
    """One axis's names: name -> component class. `register` adds a class under its `name`; `get` looks
    a name up and raises the one error shape, listing the valid names, when it is unknown."""

    def __init__(self, axis: str, base: type) -> None:
        super().__init__()
        self.axis, self.base = axis, base

    def register(self, cls: C) -> C:
        """Add `cls` under `cls.name`; usable as a class decorator. A name may be registered once."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise ValueError(f"`{self.axis}` components must subclass {self.base.__name__}, got {cls!r}")
        if not cls.name:
            raise ValueError(f"`{self.axis}` component {cls.__name__} needs a class attribute `name`; set one")
        if cls.name in self:
            raise ValueError(f"`{self.axis}` name must be new, but {cls.name!r} is already registered "
                             f"({self[cls.name].__name__}); pick another name")
        self[cls.name] = cls
        return cls

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The class registered as `name`; unknown names raise unless a `default` is given (as `dict.get`)."""
        if name in self:
            return self[name]
        if default is not _MISSING:
            return default
        raise ValueError(f"`{self.axis}` must be one of {sorted(self)}, got {name!r}; pass one of these names or a "
                         f"{self.base.__name__} instance")

    def __repr__(self) -> str:
        return f"Registry({self.axis!r}, {sorted(self)})"

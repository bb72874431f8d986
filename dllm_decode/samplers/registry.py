"""Named presets: a sampler name is a commit rule plus the defaults its paper uses.

Registration is explicit (no import scanning) so a policy that fails to import fails loudly. The
block schedules and early-commit rules that live in their own modules join their tables here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .adablock import AdaBlock
from .base import CommitRule
from .blocks import BLOCKS
from .credit import CreditDecoding
from .early import EARLY_COMMITS
from .eb import EntropyBound
from .localleap import LocalLeap
from .prophet import Prophet
from .sched import SchED
from .threshold import EntropyThreshold, Factor, Threshold
from .topk import DreamTopK, LLaDATopK


@dataclass(frozen=True)
class Preset:
    rule: type[CommitRule]
    rule_defaults: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # general options (blocks, early_commit, ...)
    summary: str = ""


PRESETS: dict[str, Preset] = {}
ALIASES: dict[str, str] = {}


def register(name: str, rule: type[CommitRule], *, rule_defaults: dict[str, Any] | None = None,
             defaults: dict[str, Any] | None = None, summary: str = "", aliases: tuple[str, ...] = ()) -> None:
    """Make `Sampler(name)` build `rule` with these defaults; every default stays overridable."""
    if not (isinstance(rule, type) and issubclass(rule, CommitRule)):
        raise ValueError(f"`rule` must be a CommitRule subclass, got {rule!r}")
    taken = set(PRESETS) | set(ALIASES)
    for key in (name, *aliases):
        if key in taken:
            raise ValueError(f"`name` must be new, but {key!r} is already registered; pick another name")
    unknown = set(rule_defaults or {}) - set(rule.option_names())
    if unknown:
        raise ValueError(f"`rule_defaults` has options {sorted(unknown)} that {rule.__name__} does not take; "
                         f"valid: {rule.option_names()}")
    PRESETS[name] = Preset(rule, dict(rule_defaults or {}), dict(defaults or {}), summary)
    ALIASES.update({alias: name for alias in aliases})


def resolve(name: str) -> tuple[str, Preset]:
    canonical = ALIASES.get(name, name)
    if canonical not in PRESETS:
        raise ValueError(f"`name` must be one of {available_samplers()}, got {name!r}")
    return canonical, PRESETS[canonical]


def available_samplers() -> list[str]:
    """Registered sampler names and aliases, sorted."""
    return sorted(set(PRESETS) | set(ALIASES))


register("confidence", LLaDATopK, rule_defaults={"remasking": "low_confidence"},
         summary="LLaDA semi-AR top-k, low-confidence remasking")
register("random", LLaDATopK, rule_defaults={"remasking": "random"}, summary="LLaDA semi-AR top-k, random remasking")
for _alg, _summary in (("origin", "Dream: each mask revealed with probability 1 - s/t"),
                       ("maskgit_plus", "Dream: top-k by max probability"),
                       ("topk_margin", "Dream: top-k by top-1 minus top-2 probability"),
                       ("entropy", "Dream: top-k by negative entropy")):
    register(_alg, DreamTopK, rule_defaults={"alg": _alg}, summary=_summary)
register("threshold", Threshold, summary="Fast-dLLM: commit every position with p >= threshold (0.9)",
         aliases=("fastdllm",))
register("factor", Factor, summary="Fast-dLLM factor rule: longest prefix with c_n >= 1 - f/(n+1)")
register("entropy_threshold", EntropyThreshold, summary="dParallel: commit every position with entropy <= tau_H")

BLOCKS[AdaBlock.name] = AdaBlock
EARLY_COMMITS.update({Prophet.name: Prophet, SchED.name: SchED})
register("creditdecoding", CreditDecoding, aliases=("credit",),
         summary="CreditDecoding: threshold rule on logits fused with per-block trace credit")
register("localleap", LocalLeap, summary="LocalLeap: relaxed threshold within a radius of confident anchors")
register("prophet", LLaDATopK, rule_defaults={"remasking": "low_confidence"}, defaults={"early_commit": "prophet"},
         summary="Prophet: low-confidence top-k, all-in commit once the answer's top-2 logit gap is large")
register("sched", LLaDATopK, rule_defaults={"remasking": "low_confidence"}, defaults={"early_commit": "sched"},
         summary="SchED: low-confidence top-k, all-in commit once the span's gap clears a falling schedule")
register("adablock", Threshold, defaults={"blocks": "adaptive"},
         summary="AdaBlock: threshold rule in blocks that end at confidently predicted delimiters")
register("eb", EntropyBound, summary="EB-sampler: lowest-entropy prefix with sum(H) - max(H) <= entropy_bound (0.1)")

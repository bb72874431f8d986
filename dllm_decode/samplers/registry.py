"""Named presets: a sampler name is a commit rule plus the defaults its paper uses.

Registration is explicit (no import scanning) so a policy that fails to import fails loudly. Block
schedules and early-commit rules register in `BLOCKS` / `EARLY_COMMITS` beside their base classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import CommitRule
from .credit import CreditDecoding
from .eb import EntropyBound
from .editing import MaskToToken
from .localleap import LocalLeap
from .threshold import EntropyThreshold, Factor, Threshold
from .topk import DreamTopK, LLaDATopK
from .wino import WinoDraft


@dataclass(frozen=True)
class Preset:
    rule: type[CommitRule]
    rule_defaults: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # general options (blocks, early_commit, ...)
    summary: str = ""
    paper: str = ""  # the publication behind the preset, shown by `dllm-decode samplers`


PRESETS: dict[str, Preset] = {}
ALIASES: dict[str, str] = {}


def register(name: str, rule: type[CommitRule], *, rule_defaults: dict[str, Any] | None = None,
             defaults: dict[str, Any] | None = None, summary: str = "", aliases: tuple[str, ...] = (),
             paper: str = "") -> None:
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
    PRESETS[name] = Preset(rule, dict(rule_defaults or {}), dict(defaults or {}), summary, paper)
    ALIASES.update({alias: name for alias in aliases})


def resolve(name: str) -> tuple[str, Preset]:
    canonical = ALIASES.get(name, name)
    if canonical not in PRESETS:
        raise ValueError(f"`name` must be one of {available_samplers()}, got {name!r}; `dllm-decode samplers` "
                         "describes each, or pass a CommitRule instance")
    return canonical, PRESETS[canonical]


def available_samplers() -> list[str]:
    """Registered sampler names and aliases, sorted."""
    return sorted(set(PRESETS) | set(ALIASES))


LLADA = "Nie et al. 2025, Large Language Diffusion Models (LLaDA), arXiv:2502.09992"
FAST_DLLM = "Wu et al. 2025, Fast-dLLM, arXiv:2505.22618"
register("confidence", LLaDATopK, rule_defaults={"remasking": "low_confidence"},
         summary="LLaDA semi-AR top-k, low-confidence remasking", paper=LLADA)
register("random", LLaDATopK, rule_defaults={"remasking": "random"}, summary="LLaDA semi-AR top-k, random remasking",
         paper=LLADA)
for _alg, _summary in (("origin", "Dream: each mask revealed with probability 1 - s/t"),
                       ("maskgit_plus", "Dream: top-k by max probability"),
                       ("topk_margin", "Dream: top-k by top-1 minus top-2 probability"),
                       ("entropy", "Dream: top-k by negative entropy")):
    register(_alg, DreamTopK, rule_defaults={"alg": _alg}, summary=_summary,
             paper="Ye et al. 2025, Dream 7B: Diffusion Large Language Models")
register("threshold", Threshold, summary="Fast-dLLM: commit every position with p >= threshold (0.9)",
         aliases=("fastdllm",), paper=FAST_DLLM)
register("factor", Factor, summary="Fast-dLLM factor rule: longest prefix with c_n >= 1 - f/(n+1)",
         paper=FAST_DLLM)
register("entropy_threshold", EntropyThreshold, summary="dParallel: commit every position with entropy <= tau_H",
         paper="Chen et al. 2025, dParallel: Learnable Parallel Decoding for dLLMs")

register("creditdecoding", CreditDecoding, aliases=("credit",),
         summary="CreditDecoding: threshold rule on logits fused with per-block trace credit",
         paper="Wang et al. 2025, CreditDecoding: Accelerating Parallel Decoding in Diffusion LLMs with Trace Credits")
register("localleap", LocalLeap, summary="LocalLeap: relaxed threshold within a radius of confident anchors",
         paper="LocalLeap 2025, local-determinism-guided parallel decoding for diffusion LLMs")
register("prophet", LLaDATopK, rule_defaults={"remasking": "low_confidence"}, defaults={"early_commit": "prophet"},
         summary="Prophet: low-confidence top-k, all-in commit once the answer's top-2 logit gap is large",
         paper="Li et al. 2025, Diffusion Language Models Know the Answer Before Decoding")
register("sched", LLaDATopK, rule_defaults={"remasking": "low_confidence"}, defaults={"early_commit": "sched"},
         summary="SchED: low-confidence top-k, all-in commit once the span's gap clears a falling schedule",
         paper="SchED 2025, schedule-based early decoding for diffusion LMs")
register("adablock", Threshold, defaults={"blocks": "adaptive"},
         summary="AdaBlock: threshold rule in blocks that end at confidently predicted delimiters",
         paper="Lu et al. 2025, AdaBlock-dLLM: Semantic-Aware Diffusion LLM Inference via Adaptive Block Size")
register("eb", EntropyBound, summary="EB-sampler: lowest-entropy prefix with sum(H) - max(H) <= entropy_bound (0.1)",
         paper="Ben-Hamu et al. 2025, Accelerated Sampling from Masked Diffusion Models via Entropy Bounded Unmasking")
register("wino", WinoDraft, defaults={"revision": "wino"},
         summary="WINO: draft every p > threshold (0.6), re-mask drafts whose hidden-self p falls below 0.9",
         paper="Hong et al. 2025, Wide-In, Narrow-Out: Revokable Decoding for Efficient and Effective DLLMs")
register("llada21", MaskToToken, defaults={"revision": "editing"}, aliases=("joint_threshold",),
         summary="LLaDA2.1: unmask p > threshold (0.7), replace tokens whose new argmax has p > 0.5, post-edit steps",
         paper="Bie et al. 2026, LLaDA2.1: Speeding Up Text Diffusion via Token Editing (SGLang JointThreshold)")

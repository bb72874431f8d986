"""WINO, wide-in narrow-out (Hong et al. 2025, "Wide-In, Narrow-Out: Revokable Decoding for Efficient and
Effective DLLMs", arXiv:2507.18578; the authors' code: github.com/Feng-Hong/WINO-DLLM, `decoding_wino`).

Wide in (`WinoDraft`, a commit rule): commit every masked block position with p(x0) > `threshold` (0.6),
at most the `cap` most confident of them, cap = min(max(floor(0.7 m), 5), 20) for m masks in the block,
and at least the most confident one.
Narrow out (`Wino`, a revision): the same forward also predicts every block position with its own token
hidden (a shadow copy of the block, all masks, whose rows see every real token but their own column); a
token committed before this step whose shadow probability is < `threshold_back` (0.9) returns to the mask,
only in steps that committed more than one token, and when as many or more fail than the previous step
committed (k), only the k - 1 least confident return (the budget that makes every step net progress).
The constants 0.7, 5, 20 and the first step's k = 30 are the authors' fixed values.
Differences from the authors' loop, both outside their setting: given (infill) tokens are never
re-masked (theirs would verify them), and batches are vectorised per row (theirs decode one prompt).
Typical ranges: threshold 0.5-0.7, threshold_back 0.8-0.95. Needs a full-attention, unshifted (LLaDA-style)
model and no KV cache: the shadow forward is one dense forward with a 4-D attention mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import validation
from ..components import Need, PlanView
from .base import (CommitRule, Decision, StepInput, at_least_argmax, forbid_eos, masked_confidence, sample_tokens,
                   token_probability, top_k_mask)
from .revision import REVISIONS, BudgetedRevision, Review, RevisionState

if TYPE_CHECKING:
    from ..config import DecodeConfig

WIDE_SHARE, WIDE_MIN, WIDE_MAX = 0.7, 5, 20  # cap = min(max(floor(0.7 m), 5), 20), the authors' constants
FIRST_ACCEPTED = 30  # the authors' `last_accept` before a block's first step
SHADOW = "its shadow forward appends a verification block that only the plain dense forward builds"


def wide_cap(masks: Tensor) -> Tensor:
    """[B] long cap on one step's commits; floor(0.7 m) in float64, as the authors' int(m * 0.7)."""
    return (masks.double() * WIDE_SHARE).floor().long().clamp(WIDE_MIN, WIDE_MAX)


@dataclass(frozen=True)
class WinoDraft(CommitRule):
    """Wide in: threshold commits (strictly above), capped per step, at least one."""

    threshold: float = 0.6
    name = "wino"
    uses_steps = False
    default_block_length = 128  # the authors' LLaDA setting (gen_length 256, block_length 128)

    def __post_init__(self) -> None:
        validation.unit_interval("threshold", self.threshold, "WINO drafts every position above it; the paper uses "
                                                              "threshold=0.6")

    def commit(self, step: StepInput) -> Decision:
        logits = forbid_eos(step.logits, step.eos_ids) if step.tokens.logits_eos_inf else step.logits
        x0 = sample_tokens(logits, step.tokens.temperature, step.generator)
        confidence = masked_confidence(token_probability(logits, x0, torch.float64), x0, step)
        over = (confidence > self.threshold) & step.eligible
        cap = wide_cap(step.eligible.sum(1))
        capped = top_k_mask(confidence, cap, step.eligible)
        commit = torch.where((over.sum(1) > cap)[:, None], capped, over)
        return Decision(at_least_argmax(commit, confidence, step.eligible), x0)


@dataclass
class WinoState(RevisionState):
    accepted: Tensor | None = None  # [B] long: tokens the previous step of the block committed (k)


@REVISIONS.register
@dataclass(frozen=True)
class Wino(BudgetedRevision):
    """Narrow out: re-mask committed tokens whose shadow probability fell below `threshold_back`."""

    threshold_back: float = 0.9
    name = "wino"
    shadow = True
    needs = BudgetedRevision.needs + (
        Need("cache", "full_sequence", SHADOW, 'remove `cache` or use revision="editing"'),
        Need("attention", "any_mask", SHADOW, 'remove `attention` or use revision="editing"'),
        Need("model", "block_diffusion", "its shadow forward replaces the attention pattern with full attention",
             'use Sampler("llada21") or revision="none"', present=False),
        Need("model", "unshifted_logits", "its shadow row of column j predicts column j",
             'use revision="editing" or "none"'),
        Need("model", "mask_forward", "its shadow forward passes a 4-D attention mask", 'load the model with '
             '`load_model`, or use revision="editing" or "none"'),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validation.unit_interval("threshold_back", self.threshold_back, "WINO keeps a drafted token at or above it, "
                                                                        "e.g. threshold_back=0.9")

    def check(self, plan: PlanView, config: "DecodeConfig", given: frozenset[str]) -> None:
        if plan.cfg_scale > 0:
            raise ValueError(f"`cfg_scale` must be 0 with revision='wino' (the shadow forward has no unconditional "
                             f"copy), got {plan.cfg_scale}; remove `cfg_scale`")

    def new_state(self, batch: int, device: torch.device) -> WinoState:
        base = super().new_state(batch, device)
        return WinoState(base.revisions, base.hold, accepted=torch.full_like(base.revisions, FIRST_ACCEPTED))

    def reset(self, revision: WinoState, rows: Tensor) -> None:
        revision.accepted.masked_fill_(rows, FIRST_ACCEPTED)  # in place: the state is per request

    def review(self, step: StepInput, decision: Decision, current: Tensor, revisable: Tensor,
               revision: WinoState) -> Review:
        kept = token_probability(revision.shadow_logits, current, torch.float64)  # p(current token | every other token)
        failing = revisable & (kept < self.threshold_back)
        k = revision.accepted
        many = failing.sum(1) >= k
        weakest = top_k_mask(-kept, (k - 1).clamp_min(0), revisable)
        remask = torch.where(many[:, None], weakest, failing)
        accepted = (decision.commit & step.eligible).sum(1)
        remask &= (accepted > 1)[:, None]
        active = step.eligible.any(1)
        revision.accepted.copy_(torch.where(active, accepted, k))  # in place: the state is per request
        return Review(remask, torch.zeros_like(remask), current)

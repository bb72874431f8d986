"""LLaDA2.1's joint-threshold decoding with token editing (Bie et al. 2026, "LLaDA2.1: Speeding Up Text
Diffusion via Token Editing", arXiv:2602.08676; the public rule: SGLang's `JointThreshold` dLLM algorithm,
the one the LLaDA2.1 release serves with).

Mask to token (`MaskToToken`, a commit rule): commit every masked block position with p(x0) > `threshold`
(0.7), at least the most confident one. Token to token (`TokenEditing`, a revision): in the same step,
every token committed earlier in the block whose current prediction x0 differs from it and has
p(x0) > `edit_threshold` (0.5; 0 edits on any change of argmax) is replaced by x0. Once the block has no masks it stays
open for post-edit steps, each one forward of edits only, until a step changes nothing or
`max_post_edit_steps` (16) such steps have passed.
Defaults are the release's usage example (threshold 0.7, editing_threshold 0.5, max_post_steps 16, in
diffusers' LLaDA2 pipeline); SGLang's own defaults are 0.5 / 0 / 16. Low `threshold` with editing is the
release's speed mode, a conservative one its quality mode. Editing needs a model trained to predict at
unmasked positions (LLaDA2.1 is); on an exact denoiser a committed token predicts itself and never edits. Not
carried over: SGLang's `penalty_lambda` repetition penalty (0 by default there).
Guarantee: with `edit_threshold` >= 1 no edit happens and the decode equals the threshold rule with a
strict comparison (post-edit steps then change nothing, so each block ends one forward later).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import validation
from .base import (CommitRule, Decision, StepInput, at_least_argmax, forbid_eos, masked_confidence, sample_tokens,
                   token_probability)
from .revision import REVISIONS, BudgetedRevision, Review, RevisionState


@dataclass(frozen=True)
class MaskToToken(CommitRule):
    """M2T: threshold commits (strictly above), at least one per step."""

    threshold: float = 0.7
    name = "joint_threshold"
    uses_steps = False

    def __post_init__(self) -> None:
        validation.unit_interval("threshold", self.threshold, "the LLaDA2.1 release uses threshold=0.7, lower for its "
                                                              "speed mode")

    def commit(self, step: StepInput) -> Decision:
        logits = forbid_eos(step.logits, step.eos_ids) if step.tokens.logits_eos_inf else step.logits
        x0 = sample_tokens(logits, step.tokens.temperature, step.generator)  # argmax at temperature 0, as SGLang
        confidence = masked_confidence(token_probability(logits, x0), x0, step)
        return Decision(at_least_argmax((confidence > self.threshold) & step.eligible, confidence, step.eligible), x0)


@dataclass
class EditingState(RevisionState):
    post_steps: Tensor | None = None  # [B] long: forwards spent on the current block after its last mask


@REVISIONS.register
@dataclass(frozen=True)
class TokenEditing(BudgetedRevision):
    """T2T: replace committed tokens the model now predicts otherwise with p > `edit_threshold`."""

    edit_threshold: float = 0.5
    max_post_edit_steps: int = 16
    name = "editing"

    def __post_init__(self) -> None:
        super().__post_init__()
        validation.number("edit_threshold", self.edit_threshold, low=0, high=1,
                          fix="0 edits on any change of argmax, 1 never edits")
        validation.integer("max_post_edit_steps", self.max_post_edit_steps, low=0,
                           fix="the release uses max_post_edit_steps=16")

    def extra_steps(self, gen_length: int, block_length: int) -> int:
        return (gen_length // block_length + 1) * (self.max_post_edit_steps + 1)

    def new_state(self, batch: int, device: torch.device) -> EditingState:
        base = super().new_state(batch, device)
        return EditingState(base.revisions, base.hold, post_steps=torch.zeros_like(base.revisions))

    def reset(self, revision: EditingState, rows: Tensor) -> None:
        revision.post_steps.masked_fill_(rows, 0)  # in place: the state is per request

    def review(self, step: StepInput, decision: Decision, current: Tensor, revisable: Tensor,
               revision: EditingState) -> Review:
        filling = step.eligible.any(1)  # the block still had masks when this step began
        revision.post_steps.add_((~filling).long())  # in place: the state is per request
        expired = ~filling & (revision.post_steps > self.max_post_edit_steps)
        x0 = decision.tokens
        edits = revisable & (token_probability(step.logits, x0) > self.edit_threshold) & (x0 != current)
        edits &= ~expired[:, None]
        revision.hold = ~expired  # the loop keeps only rows whose step changed something
        return Review(torch.zeros_like(edits), edits, x0)

"""Confidence-adaptive rules: as many tokens per step as the model is sure of, at least one.

Fast-dLLM (Wu et al., 2025) `threshold`: commit every masked position of the block with p[x0] >= tau
(tau 0.9), and always the single most confident one. `factor` (f = 1.0): with confidences sorted
c1 >= c2 >= ..., commit the longest prefix with c_n >= 1 - f / (n + 1), at least one; `legacy=True` also
commits the first failing rank, as the reference code does. dParallel's `entropy_threshold`: commit the
lowest-entropy position plus every position with entropy <= tau_H nats (0.5).
These rules loop each block until it has no masks, so they take no step budget.
Guarantee: tau = 1.0 commits exactly one token per step unless a confidence is exactly 1.0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import validation
from .base import (CommitRule, Decision, StepInput, at_least_argmax, choose, confidence_of, masked_confidence,
                   top_k_mask)


def threshold_commit(confidence: Tensor, tau: float, eligible: Tensor) -> Tensor:
    """Every eligible position at or above tau, plus each row's best (shared with credit and LocalLeap)."""
    return at_least_argmax((confidence >= tau) & eligible, confidence, eligible)


@dataclass(frozen=True)
class Threshold(CommitRule):
    threshold: float = 0.9
    name = "threshold"
    uses_steps = False

    def __post_init__(self) -> None:
        validation.unit_interval("threshold", self.threshold, 'for one token per step use Sampler("confidence")')

    def commit(self, step: StepInput) -> Decision:
        x0, logp = choose(step)
        confidence = masked_confidence(confidence_of(logp, x0), x0, step)
        return Decision(threshold_commit(confidence, self.threshold, step.eligible), x0)


@dataclass(frozen=True)
class Factor(CommitRule):
    factor: float = 1.0
    legacy: bool = False
    name = "factor"
    uses_steps = False

    def __post_init__(self) -> None:
        validation.number("factor", self.factor, low=0, low_open=True, fix="e.g. factor=1 (Fast-dLLM's default)")
        validation.flag("legacy", self.legacy)

    def commit(self, step: StepInput) -> Decision:
        x0, logp = choose(step)
        confidence = masked_confidence(confidence_of(logp, x0), x0, step)
        ranked = confidence.sort(dim=-1, descending=True).values
        n = torch.arange(1, ranked.shape[-1] + 1, device=ranked.device)
        passing = (ranked >= 1 - self.factor / (n + 1)).long().cumprod(-1).sum(-1)  # longest passing prefix
        count = passing + 1 if self.legacy else passing.clamp_min(1)
        count = torch.minimum(count, step.eligible.sum(-1))
        return Decision(top_k_mask(confidence, count, step.eligible), x0)


@dataclass(frozen=True)
class EntropyThreshold(CommitRule):
    entropy_threshold: float = 0.5
    name = "entropy_threshold"
    uses_steps = False

    def __post_init__(self) -> None:
        validation.number("entropy_threshold", self.entropy_threshold, low=0, low_open=True,
                          fix="e.g. entropy_threshold=0.5 (nats, dParallel's default)")

    def commit(self, step: StepInput) -> Decision:
        x0, logp = choose(step)
        entropy = -(logp.exp() * logp).sum(-1)
        certainty = masked_confidence(-entropy, x0, step)  # higher = more certain, -inf where not allowed
        return Decision(threshold_commit(certainty, -self.entropy_threshold, step.eligible), x0)

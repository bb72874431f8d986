"""Entropy-bound sampler (EB-sampler): commit the lowest-entropy positions while they stay nearly independent.

Rule (Ben-Hamu et al., "Accelerated Sampling from Masked Diffusion Models via Entropy Bounded Unmasking",
arXiv 2505.24857): sort the eligible positions (the current block's masks) by the entropy H of their
predictive distribution, ascending, H_(1) <= H_(2) <= ...; commit the longest prefix of k positions with

    H_(1) + ... + H_(k) - max(H_(1), ..., H_(k)) <= gamma,

at least one. The left side bounds the mutual information among the k tokens, so the prefix is nearly
independent given the context and committing it together costs little against one at a time.

Typical bounds: gamma in [0.001, 1] nats; the default 0.1 is transformers' `DiffusionGemmaGenerationConfig`
default `EntropyBoundSamplerConfig(entropy_bound=0.1)`. Tie and threshold handling match transformers'
`EntropyBoundSampler.accept_canvas`: entropies as `torch.distributions.Categorical(logits=...).entropy()`
computes them, the comparison is `<=`, and the sum-minus-max is `cumsum - cummax` of the ascending sort
(transformers writes `cumsum - sorted`, the same numbers); ties keep column order (stable sort).
transformers requires gamma > 0; here gamma = 0 is allowed and commits the lowest-entropy position plus any
further ones whose predecessors in the sort all have exactly zero entropy, i.e. one token per step unless
predictions are exactly one-hot.

Entropies are those of softmax(z) (untempered, as LLaDA scores confidence) after `logits_eos_inf`; with
`confidence_eos_eot_inf` an EOS/EoT prediction counts as infinite entropy, so it is committed only when every
eligible position of its row predicts EOS (then the lowest-entropy one). The rule loops each block until it
has no masks, so it takes no step budget. Under the uniform-noise loop (DiffusionGemma) every canvas position
is eligible at every step and the logits are the loop's temperature-scheduled ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import validation
from .base import CommitRule, Decision, StepInput, forbid_eos, sample_tokens

INF = float("inf")


def token_entropy(logits: Tensor) -> Tensor:
    """H [B, n] of softmax(logits [B, n, V]) in fp32, computed as `Categorical(logits=...).entropy()` does
    (same operations in the same order, so acceptance at the bound agrees with transformers bit for bit)."""
    z = logits.float()
    logp = z - z.logsumexp(dim=-1, keepdim=True)
    p = torch.softmax(logp, dim=-1)
    return -(logp.clamp(min=torch.finfo(logp.dtype).min) * p).sum(-1)


def entropy_bound_commit(entropy: Tensor, eligible: Tensor, bound: float) -> Tensor:
    """[B, n] bool: per row, the longest entropy-ascending prefix of eligible positions whose sum minus
    its maximum is <= `bound`, and at least the lowest-entropy eligible position."""
    key = torch.where(eligible, entropy, INF)  # ineligible positions sort last and never pass
    ranked, order = key.sort(dim=-1, stable=True)
    excess = ranked.cumsum(-1) - ranked.cummax(-1).values  # sum minus max of each prefix; inf - inf = nan fails
    first = torch.arange(ranked.shape[-1], device=ranked.device) == 0
    passing = ((excess <= bound) | first).long().cumprod(-1).bool()  # a prefix: stop at the first failure
    commit = torch.zeros_like(passing).scatter_(-1, order, passing)
    return commit & eligible


@dataclass(frozen=True)
class EntropyBound(CommitRule):
    entropy_bound: float = 0.1
    name = "eb"
    uses_steps = False

    def __post_init__(self) -> None:
        validation.number("entropy_bound", self.entropy_bound, low=0,
                          fix="nats, typically 0.001 to 1; 0 commits one token per step")

    def commit(self, step: StepInput) -> Decision:
        logits = forbid_eos(step.logits, step.eos_ids) if step.tokens.logits_eos_inf else step.logits
        x0 = sample_tokens(logits, step.tokens.temperature, step.generator)
        entropy = token_entropy(logits)
        if step.tokens.confidence_eos_eot_inf:
            entropy = entropy.masked_fill(torch.isin(x0, step.eos_ids), INF)
        return Decision(entropy_bound_commit(entropy, step.eligible, float(self.entropy_bound)), x0)

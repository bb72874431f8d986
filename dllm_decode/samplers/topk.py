"""Step-budget rules: commit a scheduled number k of tokens per step, chosen by a score.

LLaDA (Nie et al., 2025): a block with m masks and s steps commits m // s per step, one more in the
first m % s steps; score = p[x0] (`low_confidence`) or uniform noise (`random`).
Dream (Ye et al., 2025): `timesteps = linspace(1, 1e-3, s + 1)`; step i commits int(n * (1 - t_{i+1} / t_i))
of the n masks left (all at the last step); score = max prob (`maskgit_plus`), top-1 minus top-2
probability (`topk_margin`) or negative entropy (`entropy`); `origin` reveals each mask independently
with probability 1 - t_{i+1} / t_i. `alg_temp` > 0 draws positions from softmax(score / alg_temp).
The grid ends at eps, so at steps = n the first step commits int((1 - eps) n / steps) = 0 and the last 2:
that is the published rule (its float32 grid gives the same counts), kept as is. n is per row here; Dream's
code uses the batch mean, which would make a row depend on its neighbours.
Guarantee: every block finishes in exactly its step budget (steps with k = 0 are the schedule's own).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import validation
from .base import CommitRule, Decision, StepInput, choose, confidence_of, masked_confidence, top_k_mask

REMASKING = ("low_confidence", "random")
DREAM_ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


def llada_counts(block_masks: Tensor, block_step: Tensor, steps: int) -> Tensor:
    """Tokens to commit this step per row [B]: an even split of the block's masks over its steps."""
    return block_masks // steps + (block_step < block_masks % steps).long()


def dream_fraction(block_step: Tensor, steps: int) -> Tensor:
    """1 - s/t on Dream's linear time grid, per row [B] (float64); 1 at the last step."""
    grid = torch.linspace(1, 1e-3, steps + 1, dtype=torch.float64, device=block_step.device)
    i = block_step.clamp(max=steps - 1)
    frac = 1 - grid[i + 1] / grid[i]
    return torch.where(block_step >= steps - 1, torch.ones_like(frac), frac)


@dataclass(frozen=True)
class LLaDATopK(CommitRule):
    """LLaDA semi-autoregressive top-k: `confidence` (low-confidence remasking) and `random`."""

    remasking: str = "low_confidence"
    name = "confidence"

    def capabilities(self) -> frozenset[str]:
        return frozenset({"random_positions" if self.remasking == "random" else "stepwise_confidence"})

    def __post_init__(self) -> None:
        validation.choice("remasking", self.remasking, REMASKING)

    def commit(self, step: StepInput) -> Decision:
        x0, logp = choose(step)
        if self.remasking == "low_confidence":
            score = confidence_of(logp, x0)
        else:
            score = torch.rand(x0.shape, generator=step.generator, device=x0.device, dtype=torch.float64)
        score = masked_confidence(score, x0, step)
        k = llada_counts(step.block_masks, step.block_step, step.steps_per_block)
        return Decision(top_k_mask(score, k, step.eligible), x0)


def dream_score(alg: str, logp: Tensor, x0: Tensor) -> Tensor:
    """Position scores [B, n] from log-probabilities [B, n, V]."""
    if alg == "maskgit_plus":
        return confidence_of(logp, x0)
    if alg == "topk_margin":
        top2 = logp.topk(2, dim=-1).values.exp()
        return top2[..., 0] - top2[..., 1]
    return (logp.exp() * logp).sum(-1)  # entropy: negative entropy, higher = more certain


@dataclass(frozen=True)
class DreamTopK(CommitRule):
    """Dream's `diffusion_generate` schedules over its linear time grid."""

    alg: str = "maskgit_plus"
    alg_temp: float = 0.0
    name = "maskgit_plus"
    default_block_length = None  # Dream decodes the whole canvas as one block

    def capabilities(self) -> frozenset[str]:
        return frozenset({"random_positions"}) if self.alg == "origin" else frozenset()

    def __post_init__(self) -> None:
        validation.choice("alg", self.alg, DREAM_ALGS)
        validation.number("alg_temp", self.alg_temp, low=0, fix="0 ranks deterministically; e.g. alg_temp=0.1")
        if self.alg == "origin" and self.alg_temp:
            raise ValueError("`alg_temp` has no effect with `alg='origin'` (positions are random already); remove it")

    def commit(self, step: StepInput) -> Decision:
        x0, logp = choose(step, tempered=True)
        frac = dream_fraction(step.block_step, step.steps_per_block)
        if self.alg == "origin":
            u = torch.rand(x0.shape, generator=step.generator, device=x0.device, dtype=torch.float64)
            return Decision((u < frac[:, None]) & step.eligible, x0)
        score = masked_confidence(dream_score(self.alg, logp, x0).double(), x0, step)
        n_mask = step.eligible.sum(-1)
        k = (n_mask.double() * frac).floor().long()
        if self.alg_temp > 0:  # Gumbel-top-k = sampling k positions without replacement from softmax(score/T)
            u = torch.rand(score.shape, generator=step.generator, device=x0.device, dtype=torch.float64)
            score = score / self.alg_temp - torch.log(-torch.log(u.clamp_min(1e-300)))
        return Decision(top_k_mask(score, k, step.eligible), x0)

"""A composed decoding strategy, `DecodePlan`, and the loop axis that runs one.

`Sampler` builds the plan (one component per axis) and hands it to the plan's `Loop`. This module
sits above every axis base class and below every loop: components see the plan only through
`components.PlanView`, so nothing it imports imports it back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .cache.base import CacheStrategy, NoCache
from .components import Component, Registry
from .kernels.base import AttentionStrategy, DenseAttention
from .samplers.base import CommitRule, TokenOptions
from .samplers.blocks import BlockSchedule
from .samplers.early import EarlyCommit
from .samplers.revision import Monotone, Revision
from .state import DecodeState

if TYPE_CHECKING:
    from .models.adapter import DiffusionLM


class Loop(Component):
    """How forwards are spent. `run` decodes `state` to completion; step-wise loops subclass `driver.StepLoop`
    and contribute one step at a time to the shared `driver.Driver`."""

    def run(self, model: "DiffusionLM", state: DecodeState, plan: "DecodePlan",
            generator: torch.Generator | None) -> None:
        raise NotImplementedError

    def stats(self, state: DecodeState) -> dict[str, Any]:
        """Loop-specific accounting for `GenerationResult.loop_stats` (forwards of other models, acceptance)."""
        return {}


# `denoise` registers in loop.py, `ssd` / `s2d2` / `deer` in speculative/ (imported by api.py)
LOOPS: Registry[type[Loop]] = Registry("loop", Loop)


@dataclass(frozen=True)
class DecodePlan:
    """A composed strategy: one object per axis, built and validated by `Sampler`."""

    rule: CommitRule
    blocks: BlockSchedule
    early: tuple[EarlyCommit, ...] = ()
    tokens: TokenOptions = field(default_factory=TokenOptions)
    steps_per_block: int | None = None
    cfg_scale: float = 0.0
    cache: CacheStrategy = field(default_factory=NoCache)
    attention: AttentionStrategy = field(default_factory=DenseAttention)
    loop: Loop | None = None  # None: plain denoising (`Denoise`)
    revision: Revision = field(default_factory=Monotone)  # takes committed tokens back (monotone by default)

    @property
    def needs_full_canvas(self) -> bool:
        return any(hook.needs_full_canvas for hook in self.early)

    def step_budget(self, gen_length: int) -> int | None:
        """Steps per block x blocks for step-budget rules; None for rules that decode until a block is empty."""
        n_blocks = self.blocks.num_blocks(gen_length)
        if self.steps_per_block is None or n_blocks is None:
            return None
        return self.steps_per_block * n_blocks

    def total_steps(self, gen_length: int) -> int:
        """The step budget, else gen_length (one token per step, the bound on steps): the denominator of
        early-commit progress and of SparseD's share of full-attention steps."""
        budget = self.step_budget(gen_length)
        return gen_length if budget is None else budget

    def components(self) -> list[Component]:
        parts: list = [self.rule, self.blocks, *self.early, self.cache, self.attention, self.revision]
        return parts + ([self.loop] if self.loop is not None else [])

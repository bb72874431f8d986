"""The revision axis: rules that take back committed tokens (re-mask them, or replace them) under a budget.

Every commit rule commits monotonically: a written token stays. A revision rule reviews each step's
decision and may return committed positions of the row's current block to the mask (WINO's narrow-out
verification) or overwrite them with the model's new prediction (LLaDA2.1's token-to-token editing).

Contract with the loop (`revocable.py`):
- only positions the loop itself committed (`commit_step >= 0`) inside the row's current block are
  revisable; prompt and given (infill) tokens never change;
- each rule declares the bound its own rule puts on revisions (WINO: fewer re-masks per step than the
  previous step committed, so a block of m masks still ends within m steps; editing: at most
  `max_post_edit_steps` edit-only steps per block, see `extra_steps`); `revision_budget` caps a row's
  revisions further: a review that would overrun it is dropped whole for that row, which then commits
  monotonically;
- the result counts a token once, in the final canvas; `loop_stats["revisions"]` counts the re-masks
  and replacements, and `commit_step` holds the step at which each token last changed;
- rows the rule `hold`s keep their block open though it has no masks (LLaDA2.1's post-edit steps).
Caches: revisions touch only the current block, which the prefix and dual caches recompute at every step
and write back when the block ends, so those serve them exactly as without revisions; caches that
reuse K/V of committed rows inside the block (delayed, windowed) do not declare `block_recompute` and are
refused by `compat.check_plan`, as are loops without the hook (they refuse `takes_back_tokens`).
The default, `revision="none"` (`Monotone`), reviews nothing and the loop skips the hook entirely.
Shapes: B batch, n window columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .. import validation
from ..components import Component, Need, Registry
from .base import Decision, StepInput


# the need every loop without the revision hook declares (all but `denoise`): compat refuses a revising rule there
WITHOUT_REVISION_HOOK = Need("revision", "takes_back_tokens", "only the plain denoising loop calls the revision hook "
                             "after its commits", 'remove `loop` or use revision="none"', present=False)


@dataclass
class RevisionState:
    """Per-request state every revision rule keeps; rules subclass it for their own per-row fields."""

    revisions: Tensor  # [B] long: committed tokens re-masked or replaced so far
    hold: Tensor  # [B] bool: rows whose block stays open this step though it has no masks
    shadow_logits: Tensor | None = None  # [B, n, V]: logits of the verification block (rules with `shadow`)


@dataclass
class Review:
    """What a rule takes back at one step; both masks are subsets of the revisable window positions."""

    remask: Tensor  # [B, n] bool: positions returned to the mask
    replace: Tensor  # [B, n] bool: positions overwritten with `tokens`
    tokens: Tensor  # [B, n] long


class Revision(Component):
    """Base class. `revises` False means the loop never calls the rule (the monotone default)."""

    revises: ClassVar[bool] = True
    shadow: ClassVar[bool] = False  # the step's forward also predicts each block position with itself hidden
    offers: ClassVar[frozenset[str]] = frozenset({"takes_back_tokens"})  # loops without the hook refuse it
    needs: ClassVar[tuple[Need, ...]] = (
        Need("cache", "block_recompute", "a revised block row must be recomputed at every step",
             'use cache="none", "prefix" or "dual"'),
        Need("blocks", "fixed_grid", "a revision reviews the whole current block, which adaptive blocks resize",
             'use blocks="fixed"'),
    )

    def budget(self) -> int | None:
        """Revisions a row may make in one request beyond the rule's own bound (None: no further cap)."""
        return 0

    def extra_steps(self, gen_length: int, block_length: int) -> int:
        """Steps a row may spend beyond a monotone decode of the same canvas (held post-edit steps)."""
        return 0

    def new_state(self, batch: int, device: torch.device) -> RevisionState:
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        return RevisionState(zeros, zeros.bool())

    def reset(self, revision: RevisionState, rows: Tensor) -> None:
        """Rows [B] bool start a new block."""

    def review(self, step: StepInput, decision: Decision, current: Tensor, revisable: Tensor,
               revision: RevisionState) -> Review:  # pragma: no cover - interface
        """`current` [B, n]: the window's tokens before this step; `revisable` [B, n]: what may be revised."""
        raise NotImplementedError

    def stats(self, revision: RevisionState | None) -> dict[str, Any]:
        if revision is None:
            return {}
        return {"revisions": int(revision.revisions.sum())}


@dataclass(frozen=True)
class Monotone(Revision):
    """No revision: every committed token stays (every rule's behaviour before this axis)."""

    name = "none"
    revises = False
    offers = frozenset()
    needs = ()  # nothing to refuse: the loop never calls a monotone rule


@dataclass(frozen=True)
class BudgetedRevision(Revision):
    """A revising rule: `revision_budget` caps its revisions per row (None: only the rule's own bound)."""

    revision_budget: int | None = None

    def __post_init__(self) -> None:
        validation.integer("revision_budget", self.revision_budget, low=0, none="no cap",
                           fix="revisions per row, e.g. revision_budget=64")

    def budget(self) -> int | None:
        return self.revision_budget


def within_budget(review: Review, revision: RevisionState, budget: int | None) -> Review:
    """Drop the whole review of rows whose revisions would exceed `budget` (they commit monotonically)."""
    if budget is None:
        return review
    asked = (review.remask | review.replace).sum(1)
    keep = (revision.revisions + asked <= budget)[:, None]
    return Review(review.remask & keep, review.replace & keep, review.tokens)


# `none` registers here; `wino` in wino.py, `editing` in editing.py (imported by samplers/registry.py)
REVISIONS: Registry[type[Revision]] = Registry("revision", Revision)
REVISIONS.register(Monotone)

"""The denoising step and the pieces every step-wise loop shares: window, forward, decision, commit.

Each `denoise` step: one forward (through the cache strategy) with logits only for the window of canvas
columns the policy reads; block starts (the schedule may read that forward); the commit rule;
early-commit hooks; the commit. The `Driver` (driver.py) runs the steps and owns the rest (done rows,
the step limit, fills, block moves, trace). Host reads per denoise step: the driver's one sync (the done
count, with the widest row's mask count when the head reads masked columns only); a `nonzero` once some
row has finished (the rows fed); a KV cache's one read of its forward's shape (`cache/rows.py`).
The speculative loops (`speculative/`) contribute their own steps from the same pieces. Only this step calls
the revision hook (`revocable.py`: WINO's shadow forward, the review after the commit); the other loops
refuse a revising rule through `compat` (`samplers.revision.WITHOUT_REVISION_HOOK`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from . import revocable
from .driver import (Driver, ForwardStep, LoopStep, Rows, StepEvent, StepLoop, Window, advance_blocks,
                     count_forward, finish_step, prepare, record_step)
from .models.adapter import DiffusionLM
from .plan import LOOPS, DecodePlan
from .samplers.base import Decision, StepInput
from .state import DecodeState

__all__ = ["Denoise", "Driver", "LoopStep", "StepEvent", "advance_blocks", "apply", "commit", "decide",
           "finish_step", "prepare", "record_step", "step_logits", "window"]


def window(state: DecodeState, plan: DecodePlan) -> tuple[Tensor, Tensor]:
    """Canvas columns [B, n] whose logits this step reads, and which of them are real (not clamped)."""
    G = state.gen_length
    if plan.needs_full_canvas and plan.cache.full_canvas:
        cols = torch.arange(G, device=state.x.device).expand(state.x.shape[0], G)
        return cols, torch.ones_like(cols, dtype=torch.bool)
    width = plan.blocks.window(G)
    cols = state.block_start[:, None] + torch.arange(width, device=state.x.device)
    return cols.clamp(max=G - 1), cols < G


def reads_masked_only(plan: DecodePlan) -> bool:
    """Whether this step's logits are read at masked block columns only, so the LM head can skip the rest.

    True for every commit rule on fixed blocks without early-commit hooks; AdaBlock reads its look-ahead
    window and Prophet/SchED average a gap over committed columns too, so they keep the whole window.
    """
    return plan.rule.masked_only and not plan.early and not plan.blocks.variable


def masked_first(cols: Tensor, real: Tensor, masked: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """The window's masked columns first (in column order), cut to `width`, the widest row's mask count.

    The head then runs on about half the block on average at one token per step (the masks of a block
    fall from its length to 1), which matters under a KV cache, where the head is a large share of a step.
    """
    order = (~masked).to(torch.uint8).sort(dim=1, stable=True).indices[:, :width]
    return cols.gather(1, order), real.gather(1, order)


def start_blocks(state: DecodeState, plan: DecodePlan, logits: Tensor, cols: Tensor, active: Tensor) -> None:
    starting = (state.block_step == 0) & active
    plan.blocks.start(state, starting, logits, None, cols)
    state.block_masks = torch.where(starting, (state.is_mask & state.block_mask).sum(1), state.block_masks)
    state.rule_state = plan.rule.reset(state.rule_state, starting)


def apply(state: DecodeState, commit: Tensor, tokens: Tensor, cols: Tensor) -> None:
    """Write committed tokens into the canvas and stamp their commit step.

    `cols` may repeat a column (windows clamped at the canvas end); scatter-add of the committed
    copies only (at most one per column) keeps a duplicate's no-op from overwriting a real commit.
    """
    canvas = state.canvas
    hits = torch.zeros_like(canvas).scatter_add_(1, cols, commit.long()) > 0
    written = torch.zeros_like(canvas).scatter_add_(1, cols, torch.where(commit, tokens, 0))
    canvas.copy_(torch.where(hits, written, canvas))  # in place: `canvas` is a view of state.x
    state.commit_step.masked_fill_(hits, state.step)


def commit(state: DecodeState, decision: Decision, cols: Tensor, real: Tensor) -> Tensor:
    """The one place a step's decision enters the canvas: its commits at real, still-masked columns of `cols`
    [B, n] are written. Hooks may commit outside the block (fills), never a window duplicate or an already
    written token. Returns the commits taken [B, n]."""
    taken = decision.commit & real & state.is_mask.gather(1, cols)
    apply(state, taken, decision.tokens, cols)
    return taken


def step_logits(model: DiffusionLM, state: DecodeState, plan: DecodePlan, rows: Tensor | None,
                cols: Tensor, fed: Tensor | None = None) -> Tensor:
    """One counted forward through the cache strategy and the attention backend (`fed` [B]: rows charged)."""
    if state.attention_state is not None:
        plan.attention.begin_step(state.attention_state, state)
    logits = plan.cache.logits(model, state, plan, rows, cols)
    count_forward(state, fed)
    return logits


def decide(state: DecodeState, plan: DecodePlan, logits: Tensor, cols: Tensor, real: Tensor, active: Tensor,
           eos_ids: Tensor, generator: torch.Generator | None) -> tuple[StepInput, Decision]:
    """Block starts, then the commit rule and the early-commit hooks for one forward's logits."""
    start_blocks(state, plan, logits, cols, active)
    eligible = real & state.in_block(cols) & state.is_mask.gather(1, cols) & active[:, None]
    step = StepInput(logits, eligible, cols, state.block_step, state.block_masks, plan.steps_per_block, eos_ids,
                     generator, plan.tokens, state.rule_state, state.step, plan.total_steps(state.gen_length))
    decision = plan.rule.commit(step)
    if decision.rule_state is not None:
        state.rule_state = decision.rule_state
    for hook in plan.early:
        decision = hook.before_commit(state, step, decision)
    return step, decision


class DenoiseStep(ForwardStep):
    """Plain denoising's step: one forward over the window, the rule's decision, the commit (and the revision
    hook's review). Split at its forward (`ForwardStep`) so the server can fuse it with other requests'."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        revision = driver.plan.revision
        self.revising, self.shadow = revision.revises, revision.revises and revision.shadow
        if self.revising:  # the revision hook (revocable.py); the monotone default skips it entirely
            revocable.begin(driver.state, driver.plan)
        # a revision reads committed block columns too, so the head keeps the whole window
        self.compact = reads_masked_only(driver.plan) and not self.revising
        self.cols = self.real = self.masked = None  # this step's window, set in `counts`

    def counts(self, active: Tensor) -> list[Tensor]:
        state, plan = self.driver.state, self.driver.plan
        self.cols, self.real = window(state, plan)
        if not self.compact:
            return []
        self.masked = self.real & state.is_mask.gather(1, self.cols) & active[:, None]
        return [self.masked.sum(1).max()]  # the widest row's masked columns: the head's width

    def prepare_step(self, rows: Rows, counts: list[int]) -> Window:
        """The window `counts` read, cut to its masked columns when the head reads only those."""
        cols, real = self.cols, self.real
        if self.compact and counts[0] < cols.shape[1]:
            cols, real = masked_first(cols, real, self.masked, max(counts[0], 1))
        return Window(rows, cols, real)

    def forward(self, window: Window) -> Tensor:
        d, rows = self.driver, window.rows
        if self.shadow:  # WINO: the same counted forward also predicts each window column with itself hidden
            return revocable.shadow_logits(d.model, d.state, window.cols, rows.mask)
        return step_logits(d.model, d.state, d.plan, rows.index, window.cols, rows.mask)

    def finish(self, window: Window, logits: Tensor) -> None:
        d, cols, real, active = self.driver, window.cols, window.real, window.rows.mask
        step, decision = decide(d.state, d.plan, logits, cols, real, active, d.eos_ids, d.generator)
        commit(d.state, decision, cols, real)
        if self.revising:  # re-mask / replace tokens committed before this step, under the budget
            revocable.revise(d.state, d.plan, step, decision, cols, real, active)


@LOOPS.register
@dataclass(frozen=True)
class Denoise(StepLoop):
    """Plain denoising: one forward per step."""

    name: ClassVar[str] = "denoise"

    def begin(self, driver: Driver) -> DenoiseStep:
        return DenoiseStep(driver)

"""The block-wise denoising loop: the one place where forwards happen and steps are counted.

Each step: one forward (through the cache strategy) with logits only for the window of canvas columns
the policy reads; block starts (the schedule may read that forward); the commit rule; early-commit
hooks; then rows whose block is empty move on. The loop reads the host once per step, for the done
flags (and the window width), plus once more on steps where some rows have finished (`nonzero` lists
the rows still decoding); a KV cache adds one read for the shape of its forward (`cache/rows.py`).
Other loops (self-speculative, AR-verified) register in `LOOPS` and reuse these pieces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from . import revocable
from .models.adapter import DiffusionLM
from .plan import LOOPS, DecodePlan, Loop
from .samplers.base import Decision, StepInput
from .state import DecodeState


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


def advance_blocks(state: DecodeState, plan: DecodePlan, active: Tensor, taken: Tensor | None = None,
                   hold: Tensor | None = None) -> None:
    """Rows whose block has no masks left move to the block holding their first remaining mask; the others
    count `taken` [B] more steps of their block (default: one per active row; SSD passes its chain depth).
    `hold` [B] bool: rows a revision rule keeps in their block (and decoding) though it has no masks."""
    G = state.gen_length
    is_mask = state.is_mask
    finished = active & ~(is_mask & state.block_mask).any(1)
    if hold is not None:
        finished = finished & ~hold
    any_mask = is_mask.any(1)
    first_mask = torch.where(any_mask, is_mask.float().argmax(1), torch.full_like(state.block_start, G))
    state.block_start = torch.where(finished, plan.blocks.next_start(first_mask).clamp(max=G), state.block_start)
    taken = active.long() if taken is None else taken * active.long()
    state.block_step = torch.where(finished, torch.zeros_like(state.block_step), state.block_step + taken)
    state.done = state.done | (~any_mask if hold is None else ~any_mask & ~hold)


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


def prepare(model: DiffusionLM, state: DecodeState, plan: DecodePlan) -> None:
    """Per-request set-up of the cache and the attention backend."""
    plan.cache.new_request(model, state, plan)
    state.extras["attention"] = plan.attention.new_request(state, plan)
    plan.blocks.new_request(model, state)  # e.g. AdaBlock resolves its delimiter ids from the tokenizer
    for hook in plan.early:
        hook.new_request(model, state)  # e.g. Prophet writes its forced anchor text into the canvas


def step_logits(model: DiffusionLM, state: DecodeState, plan: DecodePlan, rows: Tensor | None,
                cols: Tensor) -> Tensor:
    """One counted forward through the cache strategy and the attention backend."""
    backend = state.extras.get("attention")
    if backend is not None:
        plan.attention.begin_step(backend, state)
    logits = plan.cache.logits(model, state, plan, rows, cols)
    state.nfe += 1
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


def finish_step(state: DecodeState, plan: DecodePlan, active: Tensor, eos_ids: Tensor,
                taken: Tensor | None = None, hold: Tensor | None = None) -> None:
    for hook in plan.early:
        filled = hook.after_commit(state, eos_ids)
        if filled is not None:
            state.commit_step.masked_fill_(filled, state.step)
    record_step(state)
    advance_blocks(state, plan, active, taken, hold)
    state.step += 1


@dataclass(frozen=True)
class StepEvent:
    """What `generate(on_step=...)` receives after each step, on the CPU.

    `committed` [B, G] bool: positions committed in this step (fills by early-commit hooks included);
    `tokens` [B, G] long: their tokens, the mask id elsewhere; `canvas` [B, G] long: the canvas so far.
    """

    step: int
    committed: Tensor
    tokens: Tensor
    canvas: Tensor


def record_step(state: DecodeState) -> None:
    """Trace history and the `on_step` callback; one device->host copy per step, only when either is on."""
    if state.history is None and state.on_step is None:
        return
    canvas, stamps = torch.stack([state.canvas, state.commit_step]).cpu()  # stack copies: never aliases the state
    if state.history is not None:
        state.history.append(canvas)
    if state.on_step is not None:
        committed = stamps == state.step  # every commit of this step (hook fills included) carries its step
        state.on_step(StepEvent(state.step, committed, canvas.masked_fill(~committed, state.mask_id), canvas))


def denoise(model: DiffusionLM, state: DecodeState, plan: DecodePlan, generator: torch.Generator | None) -> None:
    """Run `plan` on `state` until every row's canvas has no masks."""
    eos_ids = torch.tensor(model.eos_ids, device=state.x.device)
    limit = 2 * state.gen_length * max(plan.steps_per_block or 1, 1) + 8
    prepare(model, state, plan)
    revising = plan.revision.revises  # revision axis (revocable.py): off for the monotone default
    if revising:
        revocable.begin(model, state, plan)
        limit = revocable.step_limit(plan, state.gen_length, limit)
    compact = reads_masked_only(plan) and not revising  # a revision reads committed block columns too
    while True:
        active = ~state.done
        cols, real = window(state, plan)
        if compact:
            masked = real & state.is_mask.gather(1, cols) & active[:, None]
            n_active, width = torch.stack([active.sum(), masked.sum(1).max()]).tolist()  # host sync 1: counts
        else:
            n_active = int(active.sum())  # host sync 1: the count of rows still decoding
        if n_active == 0:
            break
        if state.step >= limit:
            raise RuntimeError(f"decoding did not finish in {limit} steps: a commit rule committed nothing repeatedly")
        rows = None if n_active == active.shape[0] else active.nonzero().squeeze(1)  # sync 2, once rows finish
        if compact and width < cols.shape[1]:
            cols, real = masked_first(cols, real, masked, max(width, 1))
        if revising and plan.revision.shadow:
            logits = revocable.shadow_logits(model, state, cols)
        else:
            logits = step_logits(model, state, plan, rows, cols)
        state.row_nfe += active.long()
        step, decision = decide(state, plan, logits, cols, real, active, eos_ids, generator)
        # hooks may commit outside the block (fills), never a window duplicate or an already-written token
        apply(state, decision.commit & real & state.is_mask.gather(1, cols), decision.tokens, cols)
        if revising:  # revision hook: re-mask / replace tokens committed before this step, under the budget
            revocable.revise(state, plan, step, decision, cols, real, active)
        finish_step(state, plan, active, eos_ids, hold=state.revision.hold if revising else None)


@LOOPS.register
@dataclass(frozen=True)
class Denoise(Loop):
    """Plain denoising: one forward per step."""

    name: ClassVar[str] = "denoise"

    def run(self, model: DiffusionLM, state: DecodeState, plan: DecodePlan,
            generator: torch.Generator | None) -> None:
        denoise(model, state, plan, generator)

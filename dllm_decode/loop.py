"""The block-wise denoising loop: the one place where forwards happen and steps are counted.

Each step: one forward over the rows still decoding, logits only for the window of canvas columns the
policy reads; block starts (the schedule may read that forward); the commit rule; early-commit hooks;
then rows whose block is empty move on. The loop syncs with the host once per step, for the done flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .models.adapter import DiffusionLM
from .samplers.base import CommitRule, StepInput, TokenOptions
from .samplers.blocks import BlockSchedule
from .samplers.early import EarlyCommit
from .state import DecodeState


@dataclass(frozen=True)
class DecodePlan:
    """A composed strategy: one object per axis, built and validated by `Sampler`."""

    rule: CommitRule
    blocks: BlockSchedule
    early: tuple[EarlyCommit, ...] = ()
    tokens: TokenOptions = field(default_factory=TokenOptions)
    steps_per_block: int | None = None
    cfg_scale: float = 0.0

    @property
    def needs_full_canvas(self) -> bool:
        return any(hook.needs_full_canvas for hook in self.early)


def window(state: DecodeState, plan: DecodePlan) -> tuple[Tensor, Tensor]:
    """Canvas columns [B, n] whose logits this step reads, and which of them are real (not clamped)."""
    G = state.gen_length
    if plan.needs_full_canvas:
        cols = torch.arange(G, device=state.x.device).expand(state.x.shape[0], G)
        return cols, torch.ones_like(cols, dtype=torch.bool)
    width = plan.blocks.window(G)
    cols = state.block_start[:, None] + torch.arange(width, device=state.x.device)
    return cols.clamp(max=G - 1), cols < G


def unconditional(x: Tensor, prompt_width: int, keep: Tensor | None, mask_id: int) -> Tensor:
    """CFG's second copy: every real prompt token replaced by the mask."""
    x = x.clone()
    prompt = x[:, :prompt_width]
    real = keep[:, :prompt_width] if keep is not None else torch.ones_like(prompt, dtype=torch.bool)
    x[:, :prompt_width] = prompt.masked_fill(real, mask_id)
    return x


def forward_logits(model: DiffusionLM, state: DecodeState, plan: DecodePlan, rows: Tensor | None,
                   cols: Tensor) -> Tensor:
    """Logits [B, n, V] for canvas columns `cols`; rows not in `rows` (finished) get zeros, not compute."""
    x, pos, keep = state.x, state.positions, state.attention_mask
    sel_cols = cols
    if rows is not None:
        x, pos, sel_cols = x[rows], pos[rows], cols[rows]
        keep = keep[rows] if keep is not None else None
    targets = sel_cols + state.prompt_width
    if plan.cfg_scale > 0:  # one batched forward of [conditional; unconditional]: counted as one NFE
        x = torch.cat([x, unconditional(x, state.prompt_width, keep, state.mask_id)])
        pos, targets = torch.cat([pos, pos]), torch.cat([targets, targets])
        keep = torch.cat([keep, keep]) if keep is not None else None
    logits = model(x, positions=pos, attention_mask=keep, logits_for=targets)
    if plan.cfg_scale > 0:
        cond, uncond = logits.chunk(2)
        logits = uncond + (plan.cfg_scale + 1) * (cond - uncond)
    if rows is None:
        return logits
    full = logits.new_zeros((state.x.shape[0],) + logits.shape[1:])
    return full.index_copy_(0, rows, logits)


def start_blocks(state: DecodeState, plan: DecodePlan, logits: Tensor, cols: Tensor, active: Tensor) -> None:
    starting = (state.block_step == 0) & active
    plan.blocks.start(state, starting, logits, None, cols)
    G = state.gen_length
    canvas_cols = torch.arange(G, device=cols.device)
    in_block = (canvas_cols >= state.block_start[:, None]) & (canvas_cols < state.block_end[:, None])
    state.block_masks = torch.where(starting, (state.is_mask & in_block).sum(1), state.block_masks)
    state.rule_state = plan.rule.reset(state.rule_state, starting)


def advance_blocks(state: DecodeState, plan: DecodePlan, active: Tensor) -> None:
    """Rows whose block has no masks left move to the block holding their first remaining mask."""
    G = state.gen_length
    is_mask = state.is_mask
    canvas_cols = torch.arange(G, device=is_mask.device)
    in_block = (canvas_cols >= state.block_start[:, None]) & (canvas_cols < state.block_end[:, None])
    finished = active & ~(is_mask & in_block).any(1)
    any_mask = is_mask.any(1)
    first_mask = torch.where(any_mask, is_mask.float().argmax(1), torch.full_like(state.block_start, G))
    state.block_start = torch.where(finished, plan.blocks.next_start(first_mask).clamp(max=G), state.block_start)
    state.block_step = torch.where(finished, torch.zeros_like(state.block_step), state.block_step + active.long())
    state.done = state.done | ~any_mask


def apply(state: DecodeState, commit: Tensor, tokens: Tensor, cols: Tensor) -> None:
    """Write committed tokens into the canvas and stamp their commit step."""
    canvas = state.canvas
    current = canvas.gather(1, cols)
    canvas.scatter_(1, cols, torch.where(commit, tokens, current))  # in place: `canvas` is a view of state.x
    stamp = state.commit_step.gather(1, cols)
    state.commit_step.scatter_(1, cols, torch.where(commit, torch.full_like(stamp, state.step), stamp))


def denoise(model: DiffusionLM, state: DecodeState, plan: DecodePlan, generator: torch.Generator | None) -> None:
    """Run `plan` on `state` until every row's canvas has no masks."""
    eos_ids = torch.tensor(model.eos_ids, device=state.x.device)
    limit = 2 * state.gen_length * max(plan.steps_per_block or 1, 1) + 8
    while True:
        active = ~state.done
        n_active = int(active.sum())  # the step's one host sync
        if n_active == 0:
            break
        if state.step >= limit:
            raise RuntimeError(f"decoding did not finish in {limit} steps: a commit rule committed nothing repeatedly")
        rows = None if n_active == active.shape[0] else active.nonzero().squeeze(1)
        cols, real = window(state, plan)
        logits = forward_logits(model, state, plan, rows, cols)
        state.nfe += 1
        state.row_nfe += active.long()
        start_blocks(state, plan, logits, cols, active)
        eligible = real & state.in_block(cols) & state.is_mask.gather(1, cols) & active[:, None]
        step = StepInput(logits, eligible, cols, state.block_step, state.block_masks, plan.steps_per_block, eos_ids,
                         generator, plan.tokens, state.rule_state)
        decision = plan.rule.commit(step)
        for hook in plan.early:
            decision = hook.before_commit(state, step, decision)
        # hooks may commit outside the block (fills), never a window duplicate or an already-written token
        apply(state, decision.commit & real & state.is_mask.gather(1, cols), decision.tokens, cols)
        for hook in plan.early:
            filled = hook.after_commit(state, eos_ids)
            if filled is not None:
                state.commit_step.masked_fill_(filled, state.step)
        if state.history is not None:
            state.history.append(state.canvas.detach().clone().cpu())
        advance_blocks(state, plan, active)
        state.step += 1

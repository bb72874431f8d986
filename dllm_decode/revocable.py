"""The loop's side of the revision axis (`samplers/revision.py`): WINO's shadow forward and the step hook
that applies a rule's review. `loop.DenoiseStep` calls these only when `plan.revision.revises`, so the
monotone default runs exactly the code it ran before the axis existed.

Shadow forward (WINO): the canvas plus a copy of the window, all masks, at the window's positions. Real
rows attend to real keys only, so their logits are the plain forward's; shadow row j attends to every
real key except window column j, and to the whole shadow copy, so it predicts column j with its own token
hidden. Shapes: B batch, S = prompt width + canvas, W window columns, V vocabulary.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .driver import count_forward
from .models.adapter import DiffusionLM
from .plan import DecodePlan
from .samplers.base import Decision, StepInput
from .samplers.revision import within_budget
from .state import DecodeState


def begin(state: DecodeState, plan: DecodePlan) -> None:
    """Per-request revision state, at request start (after `driver.prepare`). Which models a shadow forward
    can run on (unshifted, our own architectures) is declared by the rule and judged by `compat.check_model`."""
    state.revision_state = plan.revision.new_state(state.x.shape[0], state.x.device)


def shadow_logits(model: DiffusionLM, state: DecodeState, cols: Tensor, fed: Tensor) -> Tensor:
    """One counted forward (`fed` [B]: rows charged): logits [B, W, V] at canvas columns `cols` [B, W]; the shadow
    rows' go to the revision state."""
    if getattr(model.module, "exact_posterior", False):
        return masked_copies(model, state, cols, fed)
    B, S = state.x.shape
    W = cols.shape[1]
    targets = cols + state.prompt_width  # [B, W] sequence columns
    x = torch.cat([state.x, torch.full((B, W), state.mask_id, dtype=torch.long, device=state.x.device)], dim=1)
    positions = torch.cat([state.positions, state.positions.gather(1, targets)], dim=1)
    keys = state.attention_mask if state.attention_mask is not None else torch.ones_like(state.x, dtype=torch.bool)
    own = torch.arange(S, device=x.device)[None, None, :] == targets[:, :, None]  # [B, W, S]
    real_rows = torch.cat([keys[:, None, :].expand(B, S, S), keys.new_zeros(B, S, W)], dim=2)  # [B, S, S + W]
    shadow_rows = torch.cat([keys[:, None, :] & ~own, keys.new_ones(B, W, W)], dim=2)  # [B, W, S + W]
    mask = torch.cat([real_rows, shadow_rows], dim=1)[:, None]  # [B, 1, S + W, S + W]
    queries = torch.cat([targets, S + torch.arange(W, device=x.device).expand(B, W)], dim=1)
    logits = model(x, positions=positions, attention_mask=mask, logits_for=queries)
    count_forward(state, fed)
    state.revision_state.shadow_logits = logits[:, W:]
    return logits[:, :W]


def revise(state: DecodeState, plan: DecodePlan, step: StepInput, decision: Decision, cols: Tensor,
           real: Tensor, active: Tensor) -> None:
    """After the step's commits are written: the rule's review of the tokens committed before this step."""
    rule, revision = plan.revision, state.revision_state
    rule.reset(revision, (state.block_step == 0) & active)
    current = state.canvas.gather(1, cols)
    stamps = state.commit_step.gather(1, cols)
    revisable = (real & state.in_block(cols) & active[:, None] & (current != state.mask_id)
                 & (stamps >= 0) & (stamps != state.step))  # committed by this loop, before this step
    review = within_budget(rule.review(step, decision, current, revisable, revision), revision,
                           rule.budget())
    remask, replace = review.remask & revisable, review.replace & revisable & ~review.remask
    changed = remask | replace
    hits = torch.zeros_like(state.canvas).scatter_add_(1, cols, changed.long()) > 0
    written = torch.where(remask, state.mask_id, review.tokens)
    canvas = torch.zeros_like(state.canvas).scatter_add_(1, cols, torch.where(changed, written, 0))
    state.canvas.copy_(torch.where(hits, canvas, state.canvas))  # in place: `canvas` is a view of state.x
    unmasked = torch.zeros_like(hits).scatter_(1, cols, remask)  # re-masked columns were never committed
    state.commit_step.copy_(torch.where(hits, torch.where(unmasked, -1, state.step), state.commit_step))
    revision.revisions += changed.sum(1)
    stepped = (decision.commit & step.eligible).any(1) | changed.any(1)
    revision.hold = revision.hold & stepped & active


def masked_copies(model: DiffusionLM, state: DecodeState, cols: Tensor, fed: Tensor | None = None) -> Tensor:
    """The shadow forward of an exact posterior (the oracle), which takes no 4-D mask: there the shadow row of
    column j is the canvas with column j masked (the shadow copy's extra masks carry no information), so the
    batch grows to B (W + 1) rows, counted as the one forward it stands for. Logits [B, W, V] as `shadow_logits`."""
    B, S = state.x.shape
    W = cols.shape[1]
    targets = cols + state.prompt_width  # [B, W] sequence columns
    hidden = torch.arange(S, device=cols.device)[None, None, :] == targets[:, :, None]  # [B, W, S]: copy j hides j
    copies = state.x[:, None, :].masked_fill(hidden, state.mask_id)  # [B, W, S]
    x = torch.cat([state.x[:, None, :], copies], dim=1).flatten(0, 1)  # [B (W + 1), S]: row b, then its copies
    expand = lambda t: t[:, None].expand(B, W + 1, *t.shape[1:]).flatten(0, 1)  # noqa: E731 - per-row repeat
    keys = None if state.attention_mask is None else expand(state.attention_mask)
    logits = model(x, positions=expand(state.positions), attention_mask=keys, logits_for=expand(targets))
    logits = logits.unflatten(0, (B, W + 1))  # [B, W + 1, W, V]
    count_forward(state, fed)
    state.revision_state.shadow_logits = logits[:, 1:].diagonal(dim1=1, dim2=2).movedim(-1, 1)  # copy j at column j
    return logits[:, 0]

"""Early-commit hooks: stop refining a row and fill what is left.

A hook may extend a step's decision before it is applied (Prophet and SchED fill every mask with
this step's prediction once the model is sure enough) and may edit the canvas after it is applied
(end-of-text fill). Hooks never call the network. The gap rules share `GapEarlyCommit` below; their
modules (`prophet.py`, `sched.py`) only say where the gap is read and how its threshold moves.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor

from ..components import Component, ModelFacts, Need, Registry
from ..state import DecodeState
from .base import Decision, StepInput


class EarlyCommit(Component):
    needs_full_canvas: ClassVar[bool] = False  # True: the step window must cover every canvas column
    offers: ClassVar[frozenset[str]] = frozenset({"edits_canvas"})

    def new_request(self, model: "ModelFacts", state: DecodeState) -> None:
        """Per-request set-up before the first forward (forced anchor text, for instance)."""

    def before_commit(self, state: DecodeState, step: StepInput, decision: Decision) -> Decision:
        return decision

    def after_commit(self, state: DecodeState, eos_ids: Tensor) -> Tensor | None:
        """Optionally fill canvas positions; returns the [B, G] bool mask of positions it filled."""
        return None


def first_eos(canvas: Tensor, eos_ids: Tensor) -> Tensor:
    """Index of the first EOS/EoT per row [B]; G where the row has none."""
    is_eos = torch.isin(canvas, eos_ids)
    G = canvas.shape[1]
    return torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(is_eos[:, 0], G, dtype=torch.long))


def fill_after_eos(state: DecodeState, eos_ids: Tensor, allowed: Tensor | None = None) -> Tensor:
    """Rows with an EOS and no mask before it (and `allowed` [B]) get EOS in every later mask; [B, G] filled."""
    canvas, is_mask = state.canvas, state.is_mask
    eos_at = first_eos(canvas, eos_ids)
    cols = torch.arange(canvas.shape[1], device=canvas.device)
    before = cols[None, :] < eos_at[:, None]
    settled = ~(is_mask & before).any(1) & (eos_at < canvas.shape[1])  # [B]
    if allowed is not None:
        settled = settled & allowed
    fill = is_mask & ~before & settled[:, None]
    # in place: `canvas` is a view of state.x; the fill id stays on the device (no host read per step)
    canvas.copy_(torch.where(fill, eos_ids[:1], canvas))
    return fill


# `prophet` and `sched` register in their modules; the end-of-text fills are the `eos_fill` switch, not names
EARLY_COMMITS: Registry[type[EarlyCommit]] = Registry("early_commit", EarlyCommit)


@dataclasses.dataclass(frozen=True)
class EndOfTextFill(EarlyCommit):
    """EoTP: once a row has committed an EOS with every earlier position filled, the rest is EOS.

    Guarantee: never changes a token before the first EOS, and only ever writes masked positions.
    """

    name = "eos_fill"
    offers = frozenset({"edits_canvas", "settled_eos_fill"})

    def after_commit(self, state: DecodeState, eos_ids: Tensor) -> Tensor | None:
        return fill_after_eos(state, eos_ids)


@dataclasses.dataclass(frozen=True)
class BlockEndOfTextFill(EarlyCommit):
    """LocalLeap's stop (`eos_fill="block"`): when a row finishes a block holding a settled EOS, the rest is EOS.

    Unlike `EndOfTextFill` the positions after the EOS inside that block are still decoded by the model.
    """

    name = "eos_fill_block"

    def after_commit(self, state: DecodeState, eos_ids: Tensor) -> Tensor | None:
        finished = ~(state.is_mask & state.block_mask).any(1)  # [B]: the current block has no masks left
        inside = first_eos(state.canvas, eos_ids) < state.block_end
        return fill_after_eos(state, eos_ids, finished & inside)


class GapEarlyCommit(EarlyCommit):
    """Fill every mask with this step's x0 once the mean top-2 logit gap z1 - z2 over a region of the
    canvas reaches a threshold that depends on progress = (global step + 1) / total steps (clamped to 1).

    Total steps is the plan's step budget when it has one, else gen_length. The gap is read from the
    raw logits of every region position (committed or not), as Prophet's reference does.
    Under a KV cache only the step window's rows are recomputed, so the gap is averaged over the region
    inside the window and "all-in" fills the window's masks; later blocks fire again at their first
    step if the model is still sure (reading stale cached rows instead would commit stale predictions).
    """

    needs_full_canvas: ClassVar[bool] = True
    # a block-diffusion model predicts later blocks from masks it never conditions on
    needs: ClassVar[tuple[Need, ...]] = (
        Need("model", "block_diffusion", "it fills masks in every block at once, but a block-diffusion model only "
             "predicts its current block", "use Sampler(\"confidence\") or Sampler(\"threshold\") on it",
             present=False),)

    def region(self, gen_length: int) -> tuple[int, int]:
        """Canvas columns [start, end) whose gap is averaged."""
        return 0, gen_length

    def threshold(self, progress: float) -> float:
        raise NotImplementedError

    def before_commit(self, state: DecodeState, step: StepInput, decision: Decision) -> Decision:
        start, end = self.region(state.gen_length)
        progress = min((step.step + 1) / max(step.total_steps or state.gen_length, 1), 1.0)
        inside = (step.cols >= start) & (step.cols < end)  # [B, n]
        top2 = step.logits.float().topk(2, dim=-1).values  # [B, n, 2]
        gap = ((top2[..., 0] - top2[..., 1]) * inside).sum(1) / inside.sum(1).clamp_min(1)  # [B] mean gap
        fire = (gap >= self.threshold(progress)) & ~state.done
        fill = state.is_mask.gather(1, step.cols) & fire[:, None]  # all-in: every remaining mask, any block
        return dataclasses.replace(decision, commit=decision.commit | fill)

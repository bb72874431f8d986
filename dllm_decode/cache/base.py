"""The cache axis: how one decoding step gets its logits, and which K/V rows it reuses.

A strategy turns "logits for canvas columns `cols`" into one model forward. `NoCache` recomputes every
row of every still-decoding sequence; the KV strategies feed only the rows they recompute and hand the
model a `KVStore` (see `models.layers`) holding the other rows' K/V. Strategies never choose tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from ..components import Component, PlanView, Registry
from ..state import DecodeState, scatter_rows

if TYPE_CHECKING:
    from ..models.adapter import DiffusionLM


def unconditional(x: Tensor, prompt_width: int, keep: Tensor | None, mask_id: int) -> Tensor:
    """CFG's second copy: every real prompt token replaced by the mask."""
    x = x.clone()
    prompt = x[:, :prompt_width]
    real = keep[:, :prompt_width] if keep is not None else torch.ones_like(prompt, dtype=torch.bool)
    x[:, :prompt_width] = prompt.masked_fill(real, mask_id)
    return x


class CacheStrategy(Component):
    exact: ClassVar[bool] = True  # token-identical to no cache for every policy
    full_canvas: ClassVar[bool] = False  # every canvas row is recomputed each step, so any column's logits are fresh

    def new_request(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView") -> None:
        """Allocate per-request buffers (kept in `state.cache_state`, a dataclass the strategy owns)."""

    def logits(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView", rows: Tensor | None,
               cols: Tensor) -> Tensor:
        """One forward; logits [B, n, V] for canvas columns `cols` [B, n]; rows outside `rows` may be zeros."""
        raise NotImplementedError

    def nbytes(self, state: DecodeState) -> int:
        return 0


# `prefix`, `dual`, `delayed` and `windowed` register in their modules (imported by cache/__init__.py)
CACHES: Registry[type[CacheStrategy]] = Registry("cache", CacheStrategy)


@CACHES.register
@dataclass(frozen=True)
class NoCache(CacheStrategy):
    """Full recomputation; finished rows are dropped from the batch."""

    name = "none"
    full_canvas = True
    offers = frozenset({"full_sequence", "block_candidates", "block_recompute"})

    def logits(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView", rows: Tensor | None,
               cols: Tensor) -> Tensor:
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
        logits = model(x, positions=pos, attention_mask=keep, logits_for=targets,
                       attention=state.attention_state)
        if plan.cfg_scale > 0:
            cond, uncond = logits.chunk(2)
            logits = uncond + (plan.cfg_scale + 1) * (cond - uncond)
        return scatter_rows(logits, rows, state.x.shape[0])

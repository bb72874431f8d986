"""Windowed cache (Window-Diffusion): decode in a sliding window of masks, prune the far field, cache the rest.

Rule: the first `active_masks` masked columns of a row (in canvas order) are active: they are
recomputed, and only they get fresh logits (other requested columns get uniform logits, so a
confidence rule never picks them while an active column remains). The next masks, up to the first
`attended_masks`, are the buffer: attended through their cached K/V. Masks beyond are the far
field: pruned (not attended). Decoded tokens are always attended; the ones decoded since the row's
last full refresh ("this phase") are recomputed so their K/V carry the real token. Every `refresh`
steps a full forward (the no-cache forward, far field included) rewrites every column.
Defaults 16 / 64 / 32 follow the paper's setting; with Dream's shift the column before each
recomputed one is recomputed too. Rules that pick positions at random (LLaDA `remasking="random"`,
Dream `alg="origin"`) would pick outside the window and are rejected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import validation
from ..components import Need
from ..state import DecodeState
from .base import CACHES
from .rows import KVCache, KVState, check_refresh, on_canvas, periodic, shifted

if TYPE_CHECKING:
    from ..components import PlanView
    from ..models.adapter import DiffusionLM


@dataclass
class WindowState(KVState):
    """The windowed cache's per-request state: the K/V buffer and the phase (`phase_start` [B], the step of each
    row's last full refresh; tokens committed since then are recomputed so their K/V carry the real token)."""

    phase_start: Tensor


@CACHES.register
@dataclass(frozen=True)
class WindowedCache(KVCache):
    active_masks: int = 16  # first masks recomputed and decodable
    attended_masks: int = 64  # first masks attended (active + buffer); later masks are pruned
    refresh: int = 32  # steps between full refreshes
    name = "windowed"
    needs = (Need("rule", "random_positions", "the windowed cache decodes only the first `active_masks` masks of a "
                  "row, and a random pick would fall outside them", "use a confidence rule or another cache",
                  present=False),) + KVCache.needs

    def __post_init__(self) -> None:
        validation.integer("active_masks", self.active_masks, low=1, fix="e.g. active_masks=16")
        validation.integer("attended_masks", self.attended_masks, low=1, fix="e.g. attended_masks=64")
        if self.attended_masks < self.active_masks:
            raise ValueError(f"`attended_masks` must be >= `active_masks` ({self.active_masks}): active masks are "
                             f"attended, got {self.attended_masks}")
        if self.refresh is None:
            raise ValueError("`refresh` must be an int >= 1 for the windowed cache, got None; e.g. refresh=32")
        check_refresh(self.refresh)

    def new_request(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView") -> None:
        super().new_request(model, state, plan)
        state.cache_state = WindowState(state.cache_state.buffer, torch.zeros_like(state.block_start))

    def refresh_rows(self, model: "DiffusionLM", state: DecodeState) -> Tensor:
        return torch.full_like(state.done, periodic(state.step, self.refresh))

    def logits(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView", rows: Tensor | None,
               cols: Tensor) -> Tensor:
        logits = super().logits(model, state, plan, rows, cols)
        if periodic(state.step, self.refresh):  # every row refreshed: a new phase, read by `partial` from next step
            state.cache_state.phase_start.fill_(state.step)  # in place: the request's own [B] tensor
        return logits

    def partial(self, model: "DiffusionLM", state: DecodeState, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        is_mask = state.is_mask
        rank = is_mask.long().cumsum(1) - 1  # [B, G]: index of each mask among the row's masks
        active = is_mask & (rank < self.active_masks)
        this_phase = state.commit_step >= state.cache_state.phase_start[:, None]
        recompute = shifted(on_canvas(state, active | this_phase), model.shift)
        canvas_keys = ~is_mask | (rank < self.attended_masks)
        keys = torch.cat([torch.ones_like(state.x[:, :state.prompt_width], dtype=torch.bool), canvas_keys], dim=1)
        return recompute, keys

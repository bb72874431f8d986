"""What every KV strategy shares: a step is a choice of recomputed rows and attended keys, then one forward.

A strategy says, per batch row, which columns to recompute (fed to the model; their fresh K/V are
written to the `KVBuffer`) and which keys to attend (a key mask over all S columns; cached K/V for the
columns not fed). Rows doing a full refresh recompute and attend everything: that forward is exactly
the no-cache forward, which is why "refresh every step" is exact for every strategy. `cached_forward`
packs the recomputed columns of each row to the front (ragged rows are padded with columns that are
computed but neither written nor read), so a row's result never depends on its neighbours.
Shapes: B batch, S = P + G columns, G canvas, n requested canvas columns, Lq fed rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from .. import validation
from ..compat import check_part_model
from ..components import Need
from ..state import DecodeState
from .base import CacheStrategy
from .store import KVBuffer, Writes

if TYPE_CHECKING:
    from ..components import PlanView
    from ..config import DecodeConfig
    from ..models.adapter import DiffusionLM


@dataclass
class KVState:
    """A KV strategy's per-request state (`state.cache_state`): the K/V of every column, batch-aligned."""

    buffer: KVBuffer


def check_refresh(value: int | None) -> None:
    validation.integer("refresh", value, low=1, none="",
                       fix="steps between full refreshes; 1 = every step, exact")


def periodic(step: int, refresh: int | None) -> bool:
    """Host-side: does the periodic full refresh fall on `step`?"""
    return refresh is not None and step % refresh == 0


def span(state: DecodeState, start: Tensor, end: Tensor | int) -> Tensor:
    """[B, S] bool: columns in [start, end) per row (full coordinates, prompt included)."""
    cols = torch.arange(state.x.shape[1], device=state.x.device)
    end = end[:, None] if isinstance(end, Tensor) else end
    return (cols >= start[:, None]) & (cols < end)


def predicting(state: DecodeState, cols: Tensor, shift: int) -> Tensor:
    """[B, S] bool: the hidden rows whose head output predicts canvas columns `cols` [B, n]."""
    rows = torch.zeros_like(state.x, dtype=torch.bool)
    return rows.scatter_(1, state.prompt_width + cols - shift, True)


def on_canvas(state: DecodeState, canvas: Tensor) -> Tensor:
    """[B, G] bool over the canvas -> [B, S] with the prompt columns False."""
    return torch.cat([canvas.new_zeros((canvas.shape[0], state.prompt_width)), canvas], dim=1)


def shifted(rows: Tensor, shift: int) -> Tensor:
    """With a logit shift, column i-1 predicts token i: recompute i-1 too whenever i is recomputed."""
    if not shift:
        return rows
    return rows | torch.cat([rows[:, 1:], rows.new_zeros((rows.shape[0], 1))], dim=1)


def cached_forward(model: "DiffusionLM", state: DecodeState, recompute: Tensor, attend: Tensor | None,
                   cols: Tensor) -> Tensor:
    """One forward feeding `recompute` [B, S] and attending `attend` [B, S] (None: every real key).

    Returns logits [B, n, V] for canvas columns `cols`; columns whose predicting row is not recomputed
    get zeros (a uniform distribution, which no confidence rule prefers over a fresh column).
    """
    B, S = recompute.shape
    counts = recompute.sum(1)
    width, everything = torch.stack([counts.max(), recompute.all().long()]).tolist()  # the shape: one host sync
    targets = state.prompt_width + cols - model.shift  # [B, n] predicting rows
    fresh = recompute.gather(1, targets)
    if width == S:  # some row refreshes: feed every column, write only the recomputed ones
        qcols, write, ids, pos = None, (None if everything else recompute), state.x, state.positions
        logits_for = targets + model.shift  # the adapter subtracts the shift again
    else:
        # recomputed columns first, in natural order; the tail of short rows is padding (not written)
        qcols = (~recompute).to(torch.uint8).sort(dim=1, stable=True).indices[:, :width]  # [B, Lq]
        write = recompute.gather(1, qcols)
        ids, pos = state.x.gather(1, qcols), state.positions.gather(1, qcols)
        slot = torch.zeros_like(state.x).scatter_(1, qcols, torch.arange(width, device=ids.device).expand(B, width))
        logits_for = slot.gather(1, targets) + model.shift
    keys = state.attention_mask
    if attend is not None:
        keys = attend if keys is None else attend & keys
    store = Writes(state.cache_state.buffer, qcols, write)
    logits = model(ids, positions=pos, attention_mask=keys, cache=store, logits_for=logits_for,
                   attention=state.attention_state)
    return logits.masked_fill(~fresh[..., None], 0.0)


@dataclass(frozen=True)
class KVCache(CacheStrategy):
    """Base of the KV strategies: subclasses choose full-refresh rows and the partial rows/keys."""

    exact: ClassVar[bool] = False  # reuses K/V computed from an older canvas (bidirectional attention)
    needs: ClassVar[tuple[Need, ...]] = (
        Need("model", "kv_cache", "the strategy feeds only the rows it recomputes",
             "load it with `load_model` or use `cache=\"none\"`"),)

    def refresh_rows(self, model: "DiffusionLM", state: DecodeState) -> Tensor:
        """[B] bool: rows whose forward this step is a full refresh (the no-cache forward)."""
        raise NotImplementedError

    def partial(self, model: "DiffusionLM", state: DecodeState, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        """(recompute [B, S] bool, attended keys [B, S] bool or None for all) of the rows not refreshing."""
        raise NotImplementedError

    def new_request(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView") -> None:
        check_part_model(("cache", self), model)  # also checked by `Sampler.fit`; here for direct callers
        state.cache_state = KVState(KVBuffer(*state.x.shape))

    def logits(self, model: "DiffusionLM", state: DecodeState, plan: "PlanView", rows: Tensor | None,
               cols: Tensor) -> Tensor:
        """Every row is computed (finished ones feed nothing and get zero logits): the buffers stay batch-aligned."""
        active = ~state.done
        full = self.refresh_rows(model, state) & active
        recompute, attend = self.partial(model, state, cols)
        recompute = (recompute | full[:, None]) & active[:, None]
        if attend is not None:
            attend = attend | full[:, None]
        return cached_forward(model, state, recompute, attend, cols)

    def nbytes(self, state: DecodeState) -> int:
        return state.cache_state.buffer.nbytes() if isinstance(state.cache_state, KVState) else 0

    def check(self, plan: "PlanView", config: "DecodeConfig", given: frozenset[str]) -> None:
        if plan.cfg_scale > 0:
            raise ValueError(f"`cfg_scale` must be 0 with `cache={self.name!r}` (the cache holds one copy of the "
                             f"batch, guidance needs two), got {plan.cfg_scale}; use `cache=\"none\"` with guidance")


@dataclass(frozen=True)
class BlockRefreshCache(KVCache):
    """KV strategies that refresh a row fully at its block start and every `refresh` steps (prefix, dual)."""

    offers: ClassVar[frozenset[str]] = frozenset({"block_recompute"})  # the current block's rows, every step

    refresh: int | None = None  # steps between extra full refreshes; None: only at block starts

    def __post_init__(self) -> None:
        check_refresh(self.refresh)

    def refresh_rows(self, model: "DiffusionLM", state: DecodeState) -> Tensor:
        return (state.block_step == 0) | periodic(state.step, self.refresh)

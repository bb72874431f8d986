"""Dual cache (Fast-dLLM, Wu et al. 2025, arXiv:2505.22618): reuse prefix and suffix K/V, recompute the block.

Rule: at each block start (and every `refresh` steps) a full forward writes every column's K/V; the
other steps feed only the current block (plus, with Dream's shift, the column before it, whose
hidden state predicts the block's first token; plus any wider window the block schedule reads, as
with AdaBlock) and attend every column, cached prefix and suffix included. Approximate with
bidirectional attention (stale prefix and suffix K/V); exact for block-causal models, where the
prefix does not depend on the block and the block does not attend the suffix. `refresh=1` is the
no-cache forward at every step, hence exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from ..state import DecodeState
from .base import CACHES
from .rows import BlockRefreshCache, predicting, span

if TYPE_CHECKING:
    from ..models.adapter import DiffusionLM


@CACHES.register
@dataclass(frozen=True)
class DualCache(BlockRefreshCache):
    name = "dual"

    def capabilities(self) -> frozenset[str]:
        # ssd's candidates replay the block-start K/V; a periodic refresh follows the reference's own step count
        return self.offers | ({"block_candidates"} if self.refresh is None else frozenset())

    def partial(self, model: "DiffusionLM", state: DecodeState, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        P = state.prompt_width
        # block_end is valid here: rows with block_step == 0 (whose end is not set yet) refresh fully
        block = span(state, P + state.block_start - model.shift, P + state.block_end)
        return block | predicting(state, cols, model.shift), None

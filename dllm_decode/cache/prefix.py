"""Prefix cache (Fast-dLLM, Wu et al. 2025, arXiv:2505.22618): reuse the K/V of everything before the block.

Rule: at each block start (and every `refresh` steps) a full forward writes every column's K/V; the
other steps feed the current block and every later column (with Dream's shift, also the column
before the block) and attend the cached prefix plus those fresh rows. Exact when the prefix's K/V
does not depend on later tokens (block-causal models); with bidirectional attention the prefix
goes stale as the block fills (an approximation Fast-dLLM measures as near-lossless on GSM8K and
HumanEval). `refresh=1` is the no-cache forward at every step, hence exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from ..state import DecodeState
from .base import CACHES
from .rows import BlockRefreshCache, span

if TYPE_CHECKING:
    from ..models.adapter import DiffusionLM


@CACHES.register
@dataclass(frozen=True)
class PrefixCache(BlockRefreshCache):
    name = "prefix"

    def partial(self, model: "DiffusionLM", state: DecodeState, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        start = state.prompt_width + state.block_start - model.shift
        return span(state, start, state.x.shape[1]), None

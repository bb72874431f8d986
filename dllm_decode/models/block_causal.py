"""Block-causal attention (block diffusion: SDAR, LLaDA2.x), with or without a KV cache.

A query at position p sees a key at position q iff q // block_size <= p // block_size: bidirectional
inside a block, causal across blocks, exactly the masks the authors' `generate` builds (tril over blocks
repeated block_size times). Blocks count from position 0, the first real token.

With a cache the keys are every column of the request's K/V buffer, not the fed rows, so the key
positions must come from the cache too. They ride along as one more "layer" (`POSITIONS_LAYER`) of the
same `KVStore`: each forward writes its rows' positions at the rows' columns, exactly as it writes their
K/V, and reads back the positions of all S columns, aligned with the keys attention will see. Any store
honouring `update(layer, k, v)` therefore works unchanged (cost: one int64 per column).
"""
from __future__ import annotations

from torch import Tensor

from .layers import KVStore

POSITIONS_LAYER = -1  # pseudo-layer of the KV store holding each column's position


def key_positions(positions: Tensor, cache: KVStore | None) -> Tensor:
    """Positions [B, S] of the keys this forward attends: the fed rows' own, or every cached column's."""
    if cache is None:
        return positions
    rows = positions[:, None, :, None]  # [B, 1, Lq, 1]: shaped like a one-head K of width 1
    keys, _ = cache.update(POSITIONS_LAYER, rows, rows)
    return keys[:, 0, :, 0]


def block_causal_mask(positions: Tensor, block_size: int, key_mask: Tensor | None = None,
                      keys: Tensor | None = None) -> Tensor:
    """bool [B, 1, Lq, S]: query i (position `positions[:, i]`) may attend key j (position `keys[:, j]`).

    `keys` defaults to the queries' own positions (no cache); `key_mask` [B, S] hides padding columns."""
    keys = positions if keys is None else keys
    allowed = (keys // block_size)[:, None, :] <= (positions // block_size)[:, :, None]  # [B, Lq, S]
    if key_mask is not None:
        allowed = allowed & key_mask.bool()[:, None, :]
    return allowed[:, None]


def attention_pattern(positions: Tensor, attention_mask: Tensor | None, cache: KVStore | None,
                      block_size: int) -> Tensor:
    """The mask a block-diffusion forward attends with: a 4-D mask is used as given (a verifier's own
    pattern); a 2-D key mask [B, S] (or None) gets the block-causal pattern over the attended keys."""
    keys = key_positions(positions, cache)  # with a cache, also records this forward's positions
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask.bool()
    return block_causal_mask(positions, block_size, attention_mask, keys)

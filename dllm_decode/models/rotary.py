"""Attention with partial rotary embeddings (LLaDA2.x, LLaDA-MoE: `partial_rotary_factor`).

Only the first R = int(D * partial_rotary_factor) dims of each head are rotated (rotate-half within
those R dims, frequencies theta^(-2i/R)); the other D - R dims pass through. With R = D this is
`layers.attend`. Build the context with `build_context(positions, R, ...)` so its tables are R wide.
Shapes: B batch, L query rows, H query heads, G key/value heads, D head dim, R rotated dims.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .layers import ForwardContext, apply_rope


def rotary_dims(head_dim: int, partial_rotary_factor: float) -> int:
    """R as the authors' default RoPE initialisation computes it; must be even for rotate-half."""
    dims = int(head_dim * partial_rotary_factor)
    if dims < 2 or dims % 2 or dims > head_dim:
        raise ValueError(f"`partial_rotary_factor` must give an even number of rotated dims in [2, head_dim="
                         f"{head_dim}], got {partial_rotary_factor!r} ({dims} dims)")
    return dims


def rotate_prefix(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first R dims of x [B, heads, L, D] (R = cos.shape[-1]); keep the rest."""
    R = cos.shape[-1]
    if R == x.shape[-1]:
        return apply_rope(x, cos, sin)
    return torch.cat([apply_rope(x[..., :R], cos, sin), x[..., R:]], dim=-1)


def attend_heads(q: Tensor, k: Tensor, v: Tensor, ctx: ForwardContext, layer: int) -> Tensor:
    """q [B, L, H, D], k/v [B, L, G, D] (already normed) -> [B, L, H*D]: rotate, cache, attend, merge."""
    B, L, H, D = q.shape
    q = rotate_prefix(q.transpose(1, 2), ctx.cos, ctx.sin)
    k = rotate_prefix(k.transpose(1, 2), ctx.cos, ctx.sin)
    v = v.transpose(1, 2)
    if ctx.cache is not None:
        k, v = ctx.cache.update(layer, k, v)
    out = ctx.backend(q, k, v, ctx.mask, layer)
    return out.transpose(1, 2).reshape(B, L, H * D)

"""Dense attention: the default backend every model layer calls, and the interface every backend meets.

Backends live here in `kernels/` and know nothing of the models that call them: a layer hands over
q, k, v and a mask and gets the attention output back. Shapes: B batch, H query heads, G key/value
heads, L query rows, S key rows, D head dim.
"""
from __future__ import annotations

from typing import Protocol

import torch.nn.functional as F
from torch import Tensor


class AttentionBackend(Protocol):
    """How a layer's attention is computed: dense SDPA below, or a per-request backend (`sparse.py`)."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, layer: int) -> Tensor: ...


def dense_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, layer: int = 0) -> Tensor:
    """SDPA with grouped-query heads; q [B, H, L, D], k/v [B, G, S, D] -> [B, H, L, D]."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

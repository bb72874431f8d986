"""Block-sparse attention on CPU (or any device) with plain PyTorch: gathered key blocks + SDPA.

Every query block keeps the same number K of key blocks (SparseD's top-k), so the kept blocks of all
(batch, head, query block) triples gather into one dense [B*H, nq, K*block, D] tensor and a single
SDPA call treats the nq query blocks as extra "heads": it does K/nk of dense attention's work plus
one gather. The gather writes into buffers kept across layers and steps (`Workspace`): on this
machine a fresh 100 MB allocation costs 3x the copy itself in page faults.

`block_sparse_reference` is the plain definition beside it: dense SDPA under the token-level mask
the block table stands for. Shapes: B batch, H query heads, G key/value heads, L query rows, S key
rows, D head dim; nq = ceil(L / block), nk = ceil(S / block); table [B, H, nq, K] of key blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.layers import dense_attention
from .pattern import dense_block_mask, num_blocks


class Workspace:
    """Reusable output buffers, one per name, reallocated only when the shape, dtype or device changes."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._buffers[name] = buf
        return buf


def block_sparse_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, table: Tensor,
                           block: int) -> Tensor:
    """Dense attention restricted to the block pattern: q [B, H, L, D], k/v [B, G, S, D] -> [B, H, L, D]."""
    L, S = q.shape[2], k.shape[2]
    return dense_attention(q, k, v, dense_block_mask(table, mask, block, L, S))


def _kept_rows(table: Tensor, B: int, H: int, G: int, n_key_blocks: int) -> Tensor:
    """Flat row ids [B*H*nq*K] into a [B*G*nk, ...] view: block t of head h lives in kv head h // (H/G)."""
    kv_head = torch.arange(H, device=table.device) // (H // G)
    base = (torch.arange(B, device=table.device)[:, None] * G + kv_head[None, :]) * n_key_blocks  # [B, H]
    return (base[:, :, None, None] + table).reshape(-1)


def _pad_rows(x: Tensor, rows: int, value: float | bool = 0.0) -> Tensor:
    """Pad dim 2 of [B, *, n, *] up to `rows`."""
    extra = rows - x.shape[2]
    if extra == 0:
        return x
    pad = (0, 0, 0, extra) if x.dim() == 4 else (0, extra)
    return F.pad(x, pad, value=value)


def _gathered_mask(mask: Tensor | None, table: Tensor, block: int, L: int, S: int) -> Tensor | None:
    """SDPA mask [B*H, nq, 1|block, K*block] for the gathered keys (None when every key is visible)."""
    B, H, nq, K = table.shape
    nk = num_blocks(S, block)
    if mask is None and S % block == 0:
        return None
    if mask is None:
        mask = torch.ones(B, 1, 1, S, dtype=torch.bool, device=table.device)
    mask = F.pad(mask, (0, nk * block - S), value=False)  # padded key columns are never visible
    if mask.shape[2] == 1:  # key mask [B, 1|H, 1, nk*block]: gather whole key blocks per head
        keys = mask.expand(B, H, 1, nk * block).reshape(B * H * nk, block)
        rows = _kept_rows(table, B, H, H, nk)
        return keys.index_select(0, rows).view(B * H, nq, 1, K * block)
    mask = F.pad(mask, (0, 0, 0, nq * block - L), value=True)  # padded query rows are discarded
    # [B, 1|H, nq*block, nk*block] -> [B, H, nq, block, nk, block], kept key blocks picked on dim 4
    tiles = mask.expand(B, H, -1, -1).reshape(B, H, nq, block, nk, block)
    index = table[:, :, :, None, :, None].expand(B, H, nq, block, K, block)
    return tiles.gather(4, index).reshape(B * H, nq, block, K * block)


def gathered_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, table: Tensor, block: int,
                       workspace: Workspace | None = None) -> Tensor:
    """Block-sparse attention, q [B, H, L, D], k/v [B, G, S, D], mask [B, 1|H, 1|L, S] -> [B, H, L, D]."""
    B, H, L, D = q.shape
    G, S = k.shape[1], k.shape[2]
    nq, nk, K = num_blocks(L, block), num_blocks(S, block), table.shape[-1]
    if table.shape != (B, H, nq, K):
        raise ValueError(f"`table` must have shape {(B, H, nq, K)} for q {tuple(q.shape)}, got {tuple(table.shape)}")
    workspace = workspace or Workspace()
    rows = _kept_rows(table, B, H, G, nk)
    picked = []
    for name, x in (("k", k), ("v", v)):
        blocks = _pad_rows(x, nk * block).reshape(B * G * nk, block * D)  # [B*G*nk, block*D], one row per key block
        out = workspace.get(name, (rows.numel(), block * D), x)
        torch.index_select(blocks, 0, rows, out=out)
        picked.append(out.view(B * H, nq, K * block, D))
    q_blocks = _pad_rows(q, nq * block).reshape(B * H, nq, block, D)  # query blocks act as heads
    attn_mask = _gathered_mask(mask, table, block, L, S)
    out = F.scaled_dot_product_attention(q_blocks, picked[0], picked[1], attn_mask=attn_mask)
    return out.view(B, H, nq * block, D)[:, :, :L]

"""Block-sparse attention on CPU (or any device) with plain PyTorch: gathered key blocks, bmm, softmax, bmm.

Every query block keeps the same number K of key blocks (SparseD's top-k), so each query block's kept
keys and values gather into dense [K*block, D] tiles and its scores are one [block, K*block] matmul:
K/nk of dense attention's work plus the gather. Query blocks go a chunk at a time (gather, scores,
softmax in place, product), so a chunk's gathered keys, values and scores are still in cache when
read back. Measured at the benchmark shape (docs/results/sparse.md): 103-117 ms per call against
120-141 ms for the former path (every kept block gathered first, then one SDPA call with query
blocks as heads, whose CPU kernel cuts 128-row queries into 32-row tiles). All intermediates live in
buffers kept across layers and steps (`Workspace`): fresh multi-megabyte tensors cost page faults
on every call. Scores are fp32 whatever the input dtype (the copies into the buffers convert).

`block_sparse_reference` is the plain definition beside it: dense SDPA under the token-level mask
the block table stands for. Shapes: B batch, H query heads, G key/value heads, L query rows, S key
rows, D head dim; nq = ceil(L / block), nk = ceil(S / block); table [B, H, nq, K] of key blocks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .dense import dense_attention
from .pattern import dense_block_mask, num_blocks


# fp32 scores of one chunk of query blocks; the chunk's gathered keys and values are as large again each
# when block = D. At the benchmark shape (720 KB of scores per 128-row block), in a 4-layer step: chunks of
# 1, 2 and 4 blocks time alike on a quiet machine (734 / 720 / 718 ms), but with a neighbour streaming
# through the shared L3, 4 is 12% slower (992 / 992 / 1114 ms); so 2.
_CHUNK_BYTES = 3 << 19


class Workspace:
    """Reusable buffers, one per name, reallocated only when the shape, dtype or device changes."""

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or like.dtype
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=dtype, device=like.device)
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


def _whole_blocks(workspace: Workspace, name: str, x: Tensor, rows: int) -> Tensor:
    """x [B, n, r, D] copied (fp32, contiguous) into a reused [B, n, rows, D] buffer, zero rows after r."""
    buf = workspace.get(name, (x.shape[0], x.shape[1], rows, x.shape[3]), x, torch.float32)
    buf[:, :, :x.shape[2]].copy_(x)
    buf[:, :, x.shape[2]:].zero_()  # padded keys are hidden by the mask; padded queries are dropped
    return buf


def _gathered_mask(mask: Tensor | None, table: Tensor, block: int, L: int, S: int) -> Tensor | None:
    """Visible keys [B*H, nq, 1|block, K*block] for the gathered keys (None when every key is visible)."""
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


def _attend_chunk(q_blocks: Tensor, k_blocks: Tensor, v_blocks: Tensor, rows: Tensor, bias: Tensor | None,
                  out: Tensor, workspace: Workspace, chunk: int) -> None:
    """Attention of query blocks q_blocks [c, block, D] to their kept keys, written into out [c, block, D].

    rows [c, K] are the kept blocks' rows of k_blocks/v_blocks [B*G*nk, block*D]; bias [c, 1|block,
    K*block] is 0 where a gathered key is visible and -inf where it is masked.
    """
    c, block, D = q_blocks.shape
    K = rows.shape[1]
    picked = []
    for name, blocks in (("k_chunk", k_blocks), ("v_chunk", v_blocks)):
        buf = workspace.get(name, (chunk * K, block * D), blocks)[:c * K]  # sliced: the last chunk is short
        picked.append(torch.index_select(blocks, 0, rows.reshape(-1), out=buf).view(c, K * block, D))
    scores = workspace.get("scores", (chunk, block, K * block), q_blocks)[:c]
    # scores = bias + q k^T / sqrt(D); beta=0 ignores the (uninitialised) input when there is no mask
    torch.baddbmm(scores if bias is None else bias, q_blocks, picked[0].transpose(1, 2),
                  beta=0 if bias is None else 1, alpha=D ** -0.5, out=scores)
    torch.softmax(scores, -1, out=scores)  # in place: the buffer is read and written row by row
    torch.bmm(scores, picked[1], out=out)


def gathered_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, table: Tensor, block: int,
                       workspace: Workspace | None = None) -> Tensor:
    """Block-sparse attention, q [B, H, L, D], k/v [B, G, S, D], mask [B, 1|H, 1|L, S] -> [B, H, L, D].

    The result has dense SDPA's memory layout ([B, L, H, D] transposed), so merging heads is a view.
    """
    B, H, L, D = q.shape
    G, S = k.shape[1], k.shape[2]
    nq, nk, K = num_blocks(L, block), num_blocks(S, block), table.shape[-1]
    if table.shape != (B, H, nq, K):
        raise ValueError(f"`table` must have shape {(B, H, nq, K)} for q {tuple(q.shape)}, got {tuple(table.shape)}")
    workspace = workspace or Workspace()
    n = B * H * nq  # query blocks, each a [block, D] tile; flat order (batch, head, query block)
    q_blocks = _whole_blocks(workspace, "q", q, nq * block).view(n, block, D)
    k_blocks, v_blocks = (_whole_blocks(workspace, name, x, nk * block).view(B * G * nk, block * D)
                          for name, x in (("k", k), ("v", v)))
    rows = _kept_rows(table, B, H, G, nk).view(n, K)
    visible = _gathered_mask(mask, table, block, L, S)
    bias = None
    if visible is not None:
        visible = visible.view(n, -1, K * block)
        bias = torch.zeros(visible.shape, device=q.device).masked_fill_(~visible, float("-inf"))
    out = workspace.get("out", (n, block, D), q, torch.float32)
    chunk = min(n, max(1, _CHUNK_BYTES // (4 * block * K * block)))
    for lo in range(0, n, chunk):  # cache-sized chunks of query blocks, not positions
        hi = min(n, lo + chunk)
        _attend_chunk(q_blocks[lo:hi], k_blocks, v_blocks, rows[lo:hi], None if bias is None else bias[lo:hi],
                      out[lo:hi], workspace, chunk)
    if visible is not None:  # a row that sees no key has an all -inf softmax (NaN); SDPA gives it 0
        out.masked_fill_(~visible.any(-1, keepdim=True), 0.0)
    result = torch.empty(B, L, H, D, dtype=q.dtype, device=q.device)  # fresh: the caller keeps it
    result.copy_(out.view(B, H, nq * block, D)[:, :, :L].transpose(1, 2))
    return result.transpose(1, 2)

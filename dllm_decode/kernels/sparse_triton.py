"""Block-sparse flash-attention forward in Triton: each program owns one query block of one head and
streams only the key blocks its row of the block table names (SparseD's pattern), with the online
softmax of FlashAttention (Dao et al. 2022) accumulated in fp32.

Inputs may be fp16, bf16 or fp32 (fp32 uses IEEE `tl.dot`, which is also what the CPU interpreter
supports: run with TRITON_INTERPRET=1 to test without a GPU; bf16 `tl.dot` is wrong there). Lengths
need not be multiples of the block; grouped-query heads read kv head h // (H / G); a key-padding
mask [B, 1, 1, S] hides keys per batch row (variable-length rows). The plain-PyTorch definition it
must equal is `sparse_torch.block_sparse_reference`. Import this module only where triton exists.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .pattern import num_blocks

_LOG2E = 1.4426950408889634


@triton.jit
def _block_sparse_fwd(
    Q, K, V, Out, Table, KeyOk, scale_log2,
    sqb, sqh, sql, sqd, skb, skh, sks, skd, svb, svh, svs, svd, sob, soh, sol, sod,
    stb, sth, stq, stk, smb, sms,
    H, L, S, n_kept, groups, head_dim,
    HAS_MASK: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    qb = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)  # int64 offsets: B*H*S*D overflows int32 at 64k context
    h = (bh % H).to(tl.int64)
    g = h // groups
    rows = qb * BLOCK + tl.arange(0, BLOCK)
    offs_n = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < head_dim
    q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sql + offs_d[None, :] * sqd,
                mask=(rows[:, None] < L) & d_ok[None, :], other=0.0)
    m_i = tl.full([BLOCK], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK, BLOCK_D], dtype=tl.float32)
    t_row = Table + b * stb + h * sth + qb * stq
    for j in range(0, n_kept):  # only the kept key blocks: this loop is where sparsity saves work
        cols = tl.load(t_row + j * stk) * BLOCK + offs_n
        col_ok = cols < S
        visible = col_ok
        if HAS_MASK:
            visible = visible & (tl.load(KeyOk + b * smb + cols * sms, mask=col_ok, other=0) != 0)
        kt = tl.load(K + b * skb + g * skh + cols[None, :] * sks + offs_d[:, None] * skd,
                     mask=col_ok[None, :] & d_ok[:, None], other=0.0)  # [BLOCK_D, BLOCK]: K transposed
        if IEEE:
            s = tl.dot(q, kt, input_precision="ieee")
        else:
            s = tl.dot(q, kt)
        s = tl.where(visible[None, :], s * scale_log2, float("-inf"))  # base-2 logits
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet stay at zero
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(V + b * svb + g * svh + cols[:, None] * svs + offs_d[None, :] * svd,
                    mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(Out + b * sob + h * soh + rows[:, None] * sol + offs_d[None, :] * sod, out.to(Out.dtype.element_ty),
             mask=(rows[:, None] < L) & d_ok[None, :])


def key_padding(mask: Tensor | None, B: int, S: int) -> Tensor | None:
    """A [B, 1, 1, S] (or [B, S]) key mask as int8 [B, S]; other mask shapes are not supported here."""
    if mask is None:
        return None
    if mask.dim() == 2:
        return mask.to(torch.int8).expand(B, S)
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[2] != 1:
        raise ValueError(f"the Triton sparse kernel takes a key-padding mask [B, 1, 1, S], got shape "
                         f"{tuple(mask.shape)}; use `sparse_backend=\"torch\"` for per-query masks")
    return mask[:, 0, 0].to(torch.int8).expand(B, S)


def triton_block_sparse_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, table: Tensor,
                                  block: int) -> Tensor:
    """Block-sparse attention, q [B, H, L, D], k/v [B, G, S, D], table [B, H, nq, K] -> [B, H, L, D]."""
    B, H, L, D = q.shape
    G, S = k.shape[1], k.shape[2]
    nq = num_blocks(L, block)
    if block < 16 or block & (block - 1):
        raise ValueError(f"`sparse_block` must be a power of two >= 16 for the Triton kernel, got {block}; "
                         "use `sparse_backend=\"torch\"` for other block sizes")
    if table.shape[:3] != (B, H, nq):
        raise ValueError(f"`table` must have shape {(B, H, nq)} + (K,) for q {tuple(q.shape)}, "
                         f"got {tuple(table.shape)}")
    table = table.to(torch.int32)
    key_ok = key_padding(mask, B, S)
    out = torch.empty_like(q)
    mask_arg = key_ok if key_ok is not None else table  # placeholder pointer, unread when HAS_MASK is False
    mask_strides = key_ok.stride() if key_ok is not None else (0, 0)
    _block_sparse_fwd[(nq, B * H)](
        q, k, v, out, table, mask_arg, D ** -0.5 * _LOG2E,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *table.stride(), *mask_strides,
        H, L, S, table.shape[-1], H // G, D,
        HAS_MASK=key_ok is not None, BLOCK=block, BLOCK_D=max(16, triton.next_power_of_2(D)),
        IEEE=q.dtype == torch.float32, num_warps=4 if block <= 64 else 8,
    )
    return out

"""SparseD pattern selection: which key blocks each query block attends to, per layer and head.

Rule (SparseD, Wang et al. 2025, "SparseD: Sparse Attention for Diffusion Language Models"): score
every (query block, key block) pair by its block-mean attention probability under full attention,
then keep for each query block the top `int(n * select) + 1` key blocks, choosing among the prompt's
key blocks and among the generated canvas's key blocks separately (n counts the blocks of that
part), so the canvas never loses its few blocks to a long prompt. The pattern is stable across
denoising steps, so it is computed once and reused.

Blocks tile the sequence from position 0 in `block`-sized pieces (the last one may be short); a key
block belongs to the prompt if it starts before the prompt width P (so a block straddling the
boundary counts as prompt). Shapes: B batch, H query heads, G key/value heads, L query rows, S key
rows, D head dim; nq = ceil(L / block), nk = ceil(S / block), K kept key blocks per query block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_CHUNK_BYTES = 256 * 2**20  # memory budget for the probabilities of one chunk of query blocks


def num_blocks(n: int, block: int) -> int:
    return -(-n // block)


def expand_heads(k: Tensor, n_heads: int) -> Tensor:
    """[B, G, S, D] -> [B, H, S, D]: query head h reads key/value head h // (H // G)."""
    groups = n_heads // k.shape[1]
    return k.repeat_interleave(groups, dim=1) if groups > 1 else k


def block_importance(q: Tensor, k: Tensor, mask: Tensor | None, block: int) -> Tensor:
    """Block-mean attention probability [B, H, nq, nk] (fp32) under full attention.

    q [B, H, L, D], k [B, G, S, D], mask bool [B, 1|H, 1|L, S] (True = attend) or None. Query rows
    are processed a chunk of blocks at a time so the [.., rows, S] probabilities stay within budget.
    """
    B, H, L, D = q.shape
    S = k.shape[2]
    nq, nk = num_blocks(L, block), num_blocks(S, block)
    k = expand_heads(k, H).float()
    rows_per_chunk = max(1, _CHUNK_BYTES // (4 * B * H * S * block)) * block
    sums = []
    for r0 in range(0, L, rows_per_chunk):  # loop over chunks of query blocks, not positions
        r1 = min(L, r0 + rows_per_chunk)
        scores = q[:, :, r0:r1].float() @ k.transpose(-1, -2) * D ** -0.5  # [B, H, r, S]
        if mask is not None:
            rows = mask if mask.shape[2] == 1 else mask[:, :, r0:r1]
            scores = scores.masked_fill(~rows, float("-inf"))
        probs = scores.softmax(-1).nan_to_num_(0.0)  # a row with no visible key contributes nothing
        probs = F.pad(probs, (0, nk * block - S, 0, num_blocks(r1 - r0, block) * block - (r1 - r0)))
        # [B, H, rows, nk*block] -> [B, H, rows/block, block, nk, block], summed within each block pair
        sums.append(probs.view(B, H, -1, block, nk, block).sum((3, 5)))
    total = torch.cat(sums, dim=2)
    q_len = (L - torch.arange(nq, device=q.device) * block).clamp(max=block).float()  # rows per query block
    k_len = (S - torch.arange(nk, device=q.device) * block).clamp(max=block).float()  # keys per key block
    return total / (q_len[:, None] * k_len[None, :])


def top_blocks(importance: Tensor, prompt_width: int, block: int, select: float) -> Tensor:
    """Kept key blocks [B, H, nq, K] (long, ascending) from importance [B, H, nq, nk].

    K = kp + kg with kp = min(int(np * select) + 1, np) over the np prompt blocks and likewise kg over
    the canvas blocks; `select` >= 1 keeps every block.
    """
    nk = importance.shape[-1]
    n_prompt = min(num_blocks(prompt_width, block), nk)
    parts = []
    for lo, hi in ((0, n_prompt), (n_prompt, nk)):  # the two key segments, each chosen on its own
        n = hi - lo
        if n == 0:
            continue
        keep = min(int(n * select) + 1, n)
        parts.append(importance[..., lo:hi].topk(keep, dim=-1).indices + lo)
    return torch.cat(parts, dim=-1).sort(dim=-1).values


def table_to_mask(table: Tensor, n_key_blocks: int) -> Tensor:
    """Block-level keep mask [B, H, nq, nk] bool from a block table [B, H, nq, K]."""
    keep = torch.zeros(table.shape[:-1] + (n_key_blocks,), dtype=torch.bool, device=table.device)
    return keep.scatter_(-1, table, True)


def dense_block_mask(table: Tensor, mask: Tensor | None, block: int, L: int, S: int) -> Tensor:
    """Token-level mask [B, H, L, S]: the block pattern intersected with the attention mask."""
    keep = table_to_mask(table, num_blocks(S, block))
    keep = keep.repeat_interleave(block, dim=2)[:, :, :L].repeat_interleave(block, dim=3)[..., :S]
    return keep if mask is None else keep & mask

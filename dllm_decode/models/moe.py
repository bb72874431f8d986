"""Mixture-of-experts feed-forward: routers of LLaDA2.x and LLaDA-MoE, and one vectorised expert dispatch.

A router maps token states x [N, d] to (experts [N, k] long, weights [N, k] fp32); `dispatch` sums
weight * expert(x) over each token's k experts. Tokens are never looped over: the N*k (token, expert)
slots are sorted by expert, each expert runs once on its contiguous slice, and the outputs are
scattered back. The loop over experts (E iterations, one batched matmul each) is the standard
formulation (the authors' `moe_infer` does the same); its slice sizes cost one host sync per MoE layer.
Shapes: N tokens (batch x rows flattened), d hidden, E experts, k experts per token, G expert groups.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dispatch(x: Tensor, experts: nn.ModuleList, chosen: Tensor, weights: Tensor) -> Tensor:
    """sum_j weights[:, j] * experts[chosen[:, j]](x) -> [N, d]; x [N, d], chosen/weights [N, k].

    The weighted sum runs in fp32 (the routers' weights are fp32) and is cast back to x's dtype."""
    N, k = chosen.shape
    slots = chosen.reshape(-1)  # [N*k] expert of each (token, choice) slot
    order = slots.argsort(stable=True)  # slots grouped by expert
    sizes = torch.bincount(slots, minlength=len(experts)).tolist()  # the host sync: slice sizes per expert
    routed = x[order // k]  # [N*k, d] token states in expert order
    out = torch.empty_like(routed)
    start = 0
    for expert, size in zip(experts, sizes):
        if size:
            out[start:start + size] = expert(routed[start:start + size])
        start += size
    unsorted = torch.empty_like(out)
    unsorted[order] = out  # back to (token, choice) order
    return (unsorted.view(N, k, -1).float() * weights[..., None]).sum(1).to(x.dtype)


def group_limited_sigmoid(logits: Tensor, bias: Tensor, top_k: int, n_group: int, topk_group: int,
                          scale: float) -> tuple[Tensor, Tensor]:
    """LLaDA2.x router (DeepSeek-V3 style): sigmoid scores; the bias steers selection only.

    A group's score is the sum of its two best biased scores; only the `topk_group` best groups compete
    for the top-k experts. Weights are the chosen unbiased scores, renormalised (k > 1) and multiplied
    by the routed scaling factor. logits [N, E] fp32 -> (experts [N, k], weights [N, k])."""
    N, E = logits.shape
    scores = torch.sigmoid(logits)
    biased = scores + bias
    group_score = biased.view(N, n_group, E // n_group).topk(2, dim=-1).values.sum(-1)  # [N, G]
    best_groups = group_score.topk(topk_group, dim=-1, sorted=False).indices
    allowed = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, best_groups, True)
    allowed = allowed[:, :, None].expand(N, n_group, E // n_group).reshape(N, E)
    chosen = biased.masked_fill(~allowed, float("-inf")).topk(top_k, dim=-1).indices
    weights = scores.gather(1, chosen)
    if top_k > 1:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return chosen, weights * scale


def softmax_top_k(logits: Tensor, bias: Tensor | None, top_k: int) -> tuple[Tensor, Tensor]:
    """LLaDA-MoE router: softmax over all experts (fp32), plus the expert bias when the model has one, then
    the top-k of those values are both the choice and the (unnormalised) weights, as in the authors' block."""
    probs = F.softmax(logits, dim=-1, dtype=torch.float32)
    if bias is not None:
        probs = probs + bias
    weights, chosen = probs.topk(top_k, dim=-1)
    return chosen, weights

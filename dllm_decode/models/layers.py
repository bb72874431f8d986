"""Pieces shared by every architecture: RMSNorm, rotary embeddings, the attention call, SwiGLU.

LLaDA (OLMo layout) and Dream/SDAR (Qwen layout) differ only in parameter names, biases and the
logit shift; the maths below is common, so each model file only wires names to these functions.
Shapes: B batch, L query rows, S key rows, H query heads, G key/value heads, D head dim.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.dense import AttentionBackend, dense_attention


def fresh_is_writable() -> bool:
    """True when no autograd graph is being recorded, so a tensor this code just made may be overwritten.

    Why: at 4k rows each fresh [rows, d] intermediate is megabytes that glibc's allocator often returns
    to the OS and faults in again on the next request, so an elementwise op into new memory costs several
    times the same op in place (docs/results/sparse.md). Training records a graph, so it keeps the
    out-of-place form (autograd may need the overwritten values).
    """
    return not torch.is_grad_enabled()


def add_residual(x: Tensor, update: Tensor) -> Tensor:
    """x + update, written into `update` (a sublayer's fresh output) when no graph is recorded."""
    return update.add_(x) if fresh_is_writable() and update.dtype == x.dtype else x + update


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32 and cast back before the gain, as both reference codebases do."""

    def __init__(self, dim: int, eps: float, bias: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        h = x.float()
        # mean of squares as norm^2 / dim: one reduction pass and no [rows, dim] temporary (vs pow then
        # mean); equal to h.pow(2).mean(-1) within ~3e-7 relative in fp32
        mean_square = torch.linalg.vector_norm(h, dim=-1, keepdim=True).square() / h.shape[-1]  # [.., 1]: cheap
        h = (h * torch.rsqrt(mean_square + self.eps)).to(dtype)  # a fresh tensor
        if fresh_is_writable() and torch.result_type(h, self.weight) == dtype:
            h = h.mul_(self.weight)
            return h.add_(self.bias) if self.bias is not None else h
        h = self.weight * h
        return h + self.bias if self.bias is not None else h


def rope_cos_sin(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and signed sin tables [B, 1, L, D] in fp32 for explicit (per-row) position ids [B, L].

    The sin table carries rotate-half's sign: its first half is -sin, so `apply_rope` only swaps halves.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # [B, L, D/2]
    sin = freqs.sin()
    return torch.cat([freqs, freqs], dim=-1)[:, None].cos(), torch.cat([-sin, sin], dim=-1)[:, None]


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE (NeoX/Llama convention, used by LLaDA, Dream and SDAR), applied in fp32.

    x * cos + [x2, x1] * sin with `sin` signed (see `rope_cos_sin`), i.e. [x1 c - x2 s, x2 c + x1 s]:
    one product and two half-width multiply-adds into it, with no negated or concatenated copy of x.
    In-place writes into `out`, a fresh product, are autograd-safe (the product saves its inputs only).
    """
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    sin1, sin2 = sin.chunk(2, dim=-1)
    out = xf * cos
    half = x1.shape[-1]
    out[..., :half].addcmul_(x2, sin1)
    out[..., half:].addcmul_(x1, sin2)
    return out.to(x.dtype)


class KVStore(Protocol):
    """What attention needs from a cache: write this forward's K/V rows, get back the keys to attend."""

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass
class ForwardContext:
    """Per-forward tensors every layer reads: rotary tables, mask, cache and backend."""

    cos: Tensor
    sin: Tensor
    mask: Tensor | None  # bool [B, 1|H, L, S], True = attend; None = attend everything
    cache: KVStore | None
    backend: AttentionBackend


def attend(q: Tensor, k: Tensor, v: Tensor, n_heads: int, n_kv_heads: int, ctx: ForwardContext, layer: int) -> Tensor:
    """Project-free attention core: split heads, rotate, read/write the cache, attend, merge heads.

    q [B, L, H*D], k/v [B, L, G*D] -> [B, L, H*D]. K/V are cached after RoPE: positions never move
    during diffusion decoding, so a cached row stays valid until its token changes.
    """
    B, L, _ = q.shape
    D = q.shape[-1] // n_heads
    q = q.view(B, L, n_heads, D).transpose(1, 2)
    k = k.view(B, L, n_kv_heads, D).transpose(1, 2)
    v = v.view(B, L, n_kv_heads, D).transpose(1, 2)
    q, k = apply_rope(q, ctx.cos, ctx.sin), apply_rope(k, ctx.cos, ctx.sin)
    if ctx.cache is not None:
        k, v = ctx.cache.update(layer, k, v)
    out = ctx.backend(q, k, v, ctx.mask, layer)
    return out.transpose(1, 2).reshape(B, L, n_heads * D)


def expand_mask(attention_mask: Tensor | None, n_queries: int) -> Tensor | None:
    """Accept a 2-D key mask [B, S] or a 4-D mask [B, 1|H, L, S]; return bool [B, 1|H, L|1, S]."""
    if attention_mask is None:
        return None
    mask = attention_mask.bool()
    if mask.dim() == 2:
        return mask[:, None, None, :]
    if mask.dim() == 4:
        return mask
    raise ValueError(f"`attention_mask` must be 2-D [B, S] or 4-D [B, 1, L, S], got shape {tuple(mask.shape)}")


def build_context(
    positions: Tensor, head_dim: int, theta: float, attention_mask: Tensor | None, n_queries: int,
    cache: KVStore | None, backend: AttentionBackend | None,
) -> ForwardContext:
    cos, sin = rope_cos_sin(positions, head_dim, theta)
    return ForwardContext(cos, sin, expand_mask(attention_mask, n_queries), cache, backend or dense_attention)


def default_positions(input_ids: Tensor) -> Tensor:
    B, L = input_ids.shape
    return torch.arange(L, device=input_ids.device).expand(B, L)


def select_rows(hidden: Tensor, logits_for: Tensor | None) -> Tensor:
    """Gather hidden rows [B, n, d] before the LM head so the head runs only where logits are read."""
    if logits_for is None:
        return hidden
    return hidden.gather(1, logits_for[..., None].expand(-1, -1, hidden.shape[-1]))


def shift_logits(logits: Tensor) -> Tensor:
    """Shifted-logit models (Dream, AR-initialised) predict position i from row i - 1; row 0 keeps its own."""
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def init_weights(module: nn.Module) -> None:
    """`_init_weights` of every architecture here: N(0, 0.02) matrices, zero biases, unit norm gains."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, RMSNorm):
        nn.init.ones_(module.weight)


def swiglu(x: Tensor, gate: nn.Linear, up: nn.Linear, down: nn.Linear) -> Tensor:
    """down(silu(gate(x)) * up(x)); without a graph the activation and product overwrite gate's output."""
    h = gate(x)
    if fresh_is_writable():
        return down(F.silu(h, inplace=True).mul_(up(x)))
    return down(F.silu(h) * up(x))


class GatedMLP(nn.Module):
    """The SwiGLU feed-forward under the published names `gate_proj`, `up_proj`, `down_proj` (Qwen2 / Dream, SDAR,
    and every dense layer and expert of LLaDA-MoE and LLaDA2.x)."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return swiglu(x, self.gate_proj, self.up_proj, self.down_proj)


class LogitsOutput(dict):
    """Minimal `ModelOutput`-like return value: `out.logits` and `out["logits"]` both work."""

    def __init__(self, logits: Tensor, **extra: Any) -> None:
        super().__init__(logits=logits, **extra)

    @property
    def logits(self) -> Tensor:
        return self["logits"]


class DecoderStack:
    """The LM side shared by the decoder families (Dream, SDAR, LLaDA-MoE, LLaDA2): embeddings, the layer stack,
    the final norm and the head, over a `self.model` body with `layers`, `norm` and an embedding named
    `embedding_name`. Mixed into each family's `PreTrainedModel`; the families differ in their layers and masks."""

    embedding_name = "embed_tokens"

    def head(self, hidden: Tensor) -> Tensor:
        if self.config.tie_word_embeddings:
            return F.linear(hidden, getattr(self.model, self.embedding_name).weight)
        return self.lm_head(hidden)  # through the module, so a packed CPU linear (models/packed.py) applies

    def run_layers(self, input_ids: Tensor, positions: Tensor | None, mask: Tensor | None, cache: Any,
                   logits_for: Tensor | None, attention: Any, rotary: Any) -> LogitsOutput:
        """input_ids [B, L] -> logits [B, L or n, V]; `rotary`: the head dim (or partial rotary dims) of RoPE."""
        positions = default_positions(input_ids) if positions is None else positions
        ctx = build_context(positions, rotary, self.config.rope_theta, mask, input_ids.shape[1], cache, attention)
        x = getattr(self.model, self.embedding_name)(input_ids)
        for layer in self.model.layers:
            x = layer(x, ctx)
        return LogitsOutput(self.head(self.model.norm(select_rows(x, logits_for))))

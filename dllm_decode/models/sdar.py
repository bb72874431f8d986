"""SDAR (block diffusion on the Qwen3 layout), with the published config keys and parameter names.

Published SDAR chat checkpoints (`model_type: "sdar"`, `block_size: 4`, `mask_token_id: 151669`) load
unchanged: `model.embed_tokens`, `model.layers.N.{input_layernorm, post_attention_layernorm,
self_attn.{q,k,v,o}_proj, self_attn.{q,k}_norm, mlp.{gate,up,down}_proj}`, `model.norm`, `lm_head`. Qwen3
differs from Qwen2 (Dream) by a per-head RMSNorm on queries and keys before RoPE and no qkv bias.
Attention is block-causal (models/block_causal.py): a token attends every key whose block (position //
block size) is not later than its own, bidirectionally inside its block, cached keys included. A 4-D
boolean mask, when given, replaces that pattern (S2D2's verifier passes one). Held to the authors'
modeling_sdar.py by tests/fixtures/published/sdar (tests/test_published_checkpoints.py). Logits are NOT shifted: SDAR's reference `generate.py` fills
block position i from logits row i (and its training loss reads the noisy position's own row).
"""
from __future__ import annotations

import dataclasses

from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from .adapter import DiffusionLM
from .block_causal import attention_pattern
from .dream import QwenAttention, QwenLayer
from .layers import DecoderStack, init_weights, LogitsOutput, RMSNorm, attend, default_positions


class SDARConfig(PretrainedConfig):
    model_type = "sdar"

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 2048,
        intermediate_size: int = 6144,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 16,
        num_key_value_heads: int = 8,
        head_dim: int | None = 128,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1e6,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        tie_word_embeddings: bool = False,
        block_size: int = 4,
        mask_token_id: int = 151669,
        pad_token_id: int | None = None,
        bos_token_id: int = 151643,
        eos_token_id: int = 151643,
        **kwargs,
    ) -> None:
        if hidden_act != "silu":
            raise ValueError(f"`hidden_act` must be 'silu' for the SDAR architecture implemented here, got {hidden_act!r}")
        if rope_scaling not in (None, {}) and rope_scaling.get("rope_type", rope_scaling.get("type")) != "default":
            raise ValueError(f"`rope_scaling` is not supported by this SDAR implementation, got {rope_scaling!r}")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"`block_size` must be an int >= 1, got {block_size!r}")
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.hidden_act, self.max_position_embeddings = hidden_act, max_position_embeddings
        self.rms_norm_eps, self.rope_theta = rms_norm_eps, rope_theta
        self.attention_bias, self.block_size, self.mask_token_id = attention_bias, block_size, mask_token_id
        # published configs name a training kernel ("flex_attention"); attention here is the library's backend
        kwargs.pop("attn_implementation", None)
        super().__init__(vocab_size=vocab_size, tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)


class SDARAttention(QwenAttention):
    """Qwen3 attention: per-head RMSNorm on q and k (over the head dim) before RoPE."""

    def __init__(self, cfg: SDARConfig, index: int) -> None:
        super().__init__(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                         cfg.attention_bias, index)
        self.head_dim = cfg.head_dim
        self.q_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(cfg.head_dim, cfg.rms_norm_eps)

    def forward(self, x: Tensor, ctx) -> Tensor:
        B, L, _ = x.shape
        D = self.head_dim
        q = self.q_norm(self.q_proj(x).view(B, L, self.n_heads, D)).view(B, L, -1)  # norm per head, then merge
        k = self.k_norm(self.k_proj(x).view(B, L, self.n_kv_heads, D)).view(B, L, -1)
        return self.o_proj(attend(q, k, self.v_proj(x), self.n_heads, self.n_kv_heads, ctx, self.index))


class SDARLayer(QwenLayer):
    def __init__(self, cfg: SDARConfig, index: int) -> None:
        super().__init__(cfg, index)
        self.self_attn = SDARAttention(cfg, index)


class SDARBody(nn.Module):
    def __init__(self, cfg: SDARConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(SDARLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class SDARForCausalLM(DecoderStack, PreTrainedModel):
    """SDAR with the library's forward: explicit positions, bool masks and `logits_for`."""

    config_class = SDARConfig
    base_model_prefix = "model"
    _no_split_modules = ["SDARLayer"]
    block_causal = True  # `forward` takes `block_size` (see `with_block_size`)

    def __init__(self, config: SDARConfig) -> None:
        super().__init__(config)
        self.model = SDARBody(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module)

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None, block_size: int | None = None) -> LogitsOutput:
        """input_ids [B, L] -> logits [B, L or n, V]. A 2-D key mask (or None) gets the block-causal pattern of
        `block_size` (default: the config's) over the attended keys, cached ones included (models/block_causal.py);
        a 4-D mask [B, 1|H, L, S] is used as given."""
        cfg = self.config
        positions = default_positions(input_ids) if positions is None else positions
        mask = attention_pattern(positions, attention_mask, cache, block_size or cfg.block_size)
        return self.run_layers(input_ids, positions, mask, cache, logits_for, attention, cfg.head_dim)


class _BlockSizeView(nn.Module):
    """The same block-diffusion weights (SDAR, LLaDA2.x) run with another attention block size (1 = AR mode)."""

    def __init__(self, inner: nn.Module, block_size: int) -> None:
        super().__init__()
        self.inner, self.block_size = inner, block_size

    def forward(self, input_ids: Tensor, **kwargs) -> LogitsOutput:
        return self.inner(input_ids, block_size=self.block_size, **kwargs)


def with_block_size(model: DiffusionLM, block_size: int) -> DiffusionLM:
    """`model` (SDAR, LLaDA2.x) decoding with attention block size `block_size`; 1 is the model's own AR mode."""
    module = model.module.inner if isinstance(model.module, _BlockSizeView) else model.module
    if not getattr(module, "block_causal", False):
        raise ValueError(f"`model` must be a block-diffusion model (SDAR, LLaDA2.x) from `load_model`, got "
                         f"{type(module).__name__}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"`block_size` must be an int >= 1, got {block_size!r}")
    return dataclasses.replace(model, module=_BlockSizeView(module, block_size), name=f"{model.name}@block{block_size}",
                               block_size=block_size)


def _register() -> None:
    from .registry import Architecture, register_architecture

    register_architecture(Architecture(SDARConfig, SDARForCausalLM, shift=0))


_register()

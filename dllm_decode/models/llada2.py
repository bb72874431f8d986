"""LLaDA2.0 / LLaDA2.1 (MoE, block diffusion), with the published config keys and parameter names.

inclusionAI/LLaDA2.0-mini, -flash and the 2.1 checkpoints (`model_type: "llada2_moe"`; 2.0 and 2.1 share
the architecture and differ in their decoding) load unchanged: `model.word_embeddings`,
`model.layers.N.{input_layernorm, post_attention_layernorm}`, `model.layers.N.attention.{query_key_value
(fused q|k|v rows), query_layernorm, key_layernorm, dense}`, dense layers (`N < first_k_dense_replace`)
`mlp.{gate,up,down}_proj`, MoE layers `mlp.gate.{weight, expert_bias}`, `mlp.experts.E.*`,
`mlp.shared_experts.*`, then `model.norm`, `lm_head`. Per-head RMSNorm on q and k before a partial RoPE
(`partial_rotary_factor`, 0.5 published); the router is `moe.group_limited_sigmoid`. No logit shift:
the authors' `generate` fills block position i from logits row i. Attention is block-causal at
`block_size` (models/block_causal.py); published configs carry no block size, so it defaults to 32,
the `block_length` default of the authors' `generate`. Held to the authors' modeling_llada2_moe.py by
tests/fixtures/published/llada2 (tests/test_published_checkpoints.py).
"""
from __future__ import annotations

import logging
import re

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from .block_causal import attention_pattern
from .layers import DecoderStack, GatedMLP, LogitsOutput, RMSNorm, add_residual, default_positions, init_weights
from .moe import dispatch, group_limited_sigmoid
from .rotary import attend_heads, rotary_dims

log = logging.getLogger(__name__)


class LLaDA2Config(PretrainedConfig):
    model_type = "llada2_moe"

    def __init__(
        self, vocab_size: int = 157184, hidden_size: int = 2048, intermediate_size: int = 5120,
        num_hidden_layers: int = 20, num_attention_heads: int = 16, num_key_value_heads: int = 4,
        head_dim: int | None = 128, hidden_act: str = "silu", use_qkv_bias: bool = False, use_qk_norm: bool = True,
        use_bias: bool = False, rms_norm_eps: float = 1e-6, max_position_embeddings: int = 32768,
        rope_theta: float = 600000.0, rope_scaling: dict | None = None, partial_rotary_factor: float = 0.5,
        num_experts: int = 256, num_shared_experts: int | None = 1, num_experts_per_tok: int = 8, n_group: int = 8,
        topk_group: int = 4, routed_scaling_factor: float = 2.5, moe_intermediate_size: int = 512,
        first_k_dense_replace: int = 1, score_function: str = "sigmoid", block_size: int = 32,
        mask_token_id: int = 156895, pad_token_id: int = 156892, eos_token_id: int = 156892,
        tie_word_embeddings: bool = False, **kwargs,
    ) -> None:
        if hidden_act != "silu":
            raise ValueError(f"`hidden_act` must be 'silu' for the LLaDA2 architecture implemented here, got {hidden_act!r}")
        if score_function != "sigmoid":
            raise ValueError(f"`score_function` must be 'sigmoid' (the LLaDA2 router), got {score_function!r}")
        if rope_scaling not in (None, {}) and rope_scaling.get("rope_type", rope_scaling.get("type")) != "default":
            raise ValueError(f"`rope_scaling` is not supported by this LLaDA2 implementation, got {rope_scaling!r}")
        if num_experts % n_group or topk_group > n_group:
            raise ValueError(f"`num_experts` must split into `n_group` groups and `topk_group` <= `n_group`, got "
                             f"num_experts={num_experts}, n_group={n_group}, topk_group={topk_group}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"`block_size` must be an int >= 1, got {block_size!r}")
        self.hidden_size, self.intermediate_size, self.num_hidden_layers = hidden_size, intermediate_size, num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads  # 0 (the class default) = MHA
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.hidden_act, self.use_qkv_bias, self.use_qk_norm, self.use_bias = hidden_act, use_qkv_bias, use_qk_norm, use_bias
        self.rms_norm_eps, self.max_position_embeddings = rms_norm_eps, max_position_embeddings
        self.rope_theta, self.partial_rotary_factor = rope_theta, partial_rotary_factor
        self.num_experts, self.num_shared_experts, self.num_experts_per_tok = num_experts, num_shared_experts, num_experts_per_tok
        self.n_group, self.topk_group, self.routed_scaling_factor = n_group, topk_group, routed_scaling_factor
        self.moe_intermediate_size, self.first_k_dense_replace = moe_intermediate_size, first_k_dense_replace
        self.score_function, self.block_size, self.mask_token_id = score_function, block_size, mask_token_id
        kwargs.pop("attn_implementation", None)  # attention is the library's backend, not a config choice
        super().__init__(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)


class LLaDA2Attention(nn.Module):
    def __init__(self, cfg: LLaDA2Config, index: int) -> None:
        super().__init__()
        self.index, self.n_heads, self.n_kv_heads, self.head_dim = index, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.query_key_value = nn.Linear(cfg.hidden_size, (self.n_heads + 2 * self.n_kv_heads) * self.head_dim,
                                         bias=cfg.use_qkv_bias)
        if cfg.use_qk_norm:
            self.query_layernorm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.key_layernorm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.dense = nn.Linear(self.n_heads * self.head_dim, cfg.hidden_size, bias=cfg.use_bias)

    def forward(self, x: Tensor, ctx) -> Tensor:
        B, L, _ = x.shape
        qkv = self.query_key_value(x).view(B, L, self.n_heads + 2 * self.n_kv_heads, self.head_dim)  # head rows q|k|v
        q, k, v = qkv.split([self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=2)
        if hasattr(self, "query_layernorm"):
            q, k = self.query_layernorm(q), self.key_layernorm(k)
        return self.dense(attend_heads(q, k, v, ctx, self.index))


class LLaDA2Gate(nn.Module):
    """Router parameters under the published names: `weight` [E, d] and the selection bias `expert_bias` [E]."""

    def __init__(self, n_experts: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, hidden))
        self.register_buffer("expert_bias", torch.zeros(n_experts))


class LLaDA2SparseMoe(nn.Module):
    """Routed experts plus always-on shared experts (one MLP `num_shared_experts` times as wide)."""

    def __init__(self, cfg: LLaDA2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = LLaDA2Gate(cfg.num_experts, cfg.hidden_size)
        self.experts = nn.ModuleList(GatedMLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(cfg.num_experts))
        if cfg.num_shared_experts is not None:  # the authors test `is not None` (0 gives a zero-width MLP)
            self.shared_experts = GatedMLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.num_shared_experts)

    def forward(self, x: Tensor) -> Tensor:
        cfg, (B, L, d) = self.cfg, x.shape
        flat = x.reshape(B * L, d)
        logits = nn.functional.linear(flat.float(), self.gate.weight.float())  # the router runs in fp32
        chosen, weights = group_limited_sigmoid(logits, self.gate.expert_bias.float(), cfg.num_experts_per_tok,
                                                cfg.n_group, cfg.topk_group, cfg.routed_scaling_factor)
        y = dispatch(flat, self.experts, chosen, weights).view(B, L, d)
        return y + self.shared_experts(x) if hasattr(self, "shared_experts") else y


class LLaDA2Layer(nn.Module):
    def __init__(self, cfg: LLaDA2Config, index: int) -> None:
        super().__init__()
        self.attention = LLaDA2Attention(cfg, index)
        self.mlp = LLaDA2SparseMoe(cfg) if index >= cfg.first_k_dense_replace else GatedMLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: Tensor, ctx) -> Tensor:
        x = add_residual(x, self.attention(self.input_layernorm(x), ctx))
        return add_residual(x, self.mlp(self.post_attention_layernorm(x)))


class LLaDA2Body(nn.Module):
    def __init__(self, cfg: LLaDA2Config) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LLaDA2Layer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LLaDA2ModelLM(DecoderStack, PreTrainedModel):
    """LLaDA2.x with the library's forward: explicit positions, bool masks, a KV store and `logits_for`."""

    config_class = LLaDA2Config
    base_model_prefix = "model"
    _no_split_modules = ["LLaDA2Layer"]
    block_causal = True  # `forward` takes `block_size` (see sdar.with_block_size)
    embedding_name = "word_embeddings"

    def __init__(self, config: LLaDA2Config) -> None:
        super().__init__(config)
        self.rotary = rotary_dims(config.head_dim, config.partial_rotary_factor)
        self.model = LLaDA2Body(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module)
        if isinstance(module, LLaDA2Gate):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.expert_bias)

    def unused_tensors(self, names: list[str]) -> list[str]:
        """Checkpoint tensors of layers past `num_hidden_layers` (the multi-token-prediction layers a checkpoint
        may carry): the diffusion forward never runs them, and dInfer's loader also reads only layers below
        `num_hidden_layers`. `checkpoint.checked_state_dict` drops them with a warning."""
        return [k for k in names if (m := re.match(r"model\.layers\.(\d+)\.", k))
                and int(m.group(1)) >= self.config.num_hidden_layers]

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None, block_size: int | None = None) -> LogitsOutput:
        """input_ids [B, L] -> logits [B, L or n, V]; block-causal at `block_size` (default: the config's)."""
        cfg = self.config
        positions = default_positions(input_ids) if positions is None else positions
        mask = attention_pattern(positions, attention_mask, cache, block_size or cfg.block_size)
        return self.run_layers(input_ids, positions, mask, cache, logits_for, attention, self.rotary)


def _register() -> None:
    from .registry import Architecture, register_architecture

    register_architecture(Architecture(LLaDA2Config, LLaDA2ModelLM, shift=0))


_register()

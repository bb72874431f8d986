"""LLaDA-MoE (7B-A1B; bidirectional masked diffusion, OLMoE-style MoE), with the published keys and names.

inclusionAI/LLaDA-MoE-7B-A1B-Base/Instruct load unchanged. Their config.json says `model_type: "llada"`
(the key LLaDA-8B uses), so this architecture claims a "llada" config that carries `num_experts`
(registry.architecture_for); `"lladamoe"`, the name other loaders ask users to write, works too.
Names: `model.embed_tokens`, `model.layers.N.{input_layernorm, post_attention_layernorm}`,
`self_attn.{q,k,v,o}_proj`, per-head `self_attn.{q,k}_norm` (`qk_layernorm`), dense layers
(`moe_layer_freq[N] == 0`) `mlp.{gate,up,down}_proj`, MoE layers `mlp.gate`, `mlp.experts.E.*`,
`mlp.expert_bias` (`moe_router_enable_expert_bias`) and the layer-level `shared_expert.*`, then
`model.norm`, `lm_head`. Partial RoPE (`partial_rotary_factor`); router `moe.softmax_top_k`. No logit
shift and no block structure (LLaDA's semi-autoregressive blocks are a decoding choice). Held to the
authors' modeling_lladamoe.py by tests/fixtures/published/llada_moe (tests/test_published_checkpoints.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from .layers import DecoderStack, GatedMLP, LogitsOutput, RMSNorm, add_residual, init_weights
from .moe import dispatch, softmax_top_k
from .rotary import attend_heads, rotary_dims


class LLaDAMoEConfig(PretrainedConfig):
    model_type = "lladamoe"

    def __init__(
        self, vocab_size: int = 157184, hidden_size: int = 2048, dense_intermediate_size: int = 8192,
        expert_intermediate_size: int = 1024, shared_expert_intermediate_size: int | None = None,
        num_hidden_layers: int = 16, num_attention_heads: int = 16, num_key_value_heads: int | None = None,
        hidden_act: str = "silu", max_position_embeddings: int = 8192, rms_norm_eps: float = 1e-5,
        rope_theta: float = 50000.0, partial_rotary_factor: float = 1.0, rope_scaling: dict | None = None,
        attention_bias: bool = False, clip_qkv: float | None = None, num_experts: int = 64,
        num_experts_per_tok: int = 8, qk_layernorm: bool = True, moe_layer_freq: list[int] | None = None,
        moe_router_enable_expert_bias: bool = False, moe_router_score_function: str | None = "softmax",
        mask_token_id: int = 156895, pad_token_id: int = 156892, eos_token_id: int = 156892,
        tie_word_embeddings: bool = False, **kwargs,
    ) -> None:
        checks = {"hidden_act": (hidden_act, ("silu",)), "moe_router_score_function": (moe_router_score_function, (None, "softmax")),
                  "clip_qkv": (clip_qkv, (None,))}
        for key, (got, allowed) in checks.items():
            if got not in allowed:
                raise ValueError(f"`{key}` must be one of {allowed} for the LLaDA-MoE architecture implemented here, got {got!r}")
        if rope_scaling not in (None, {}) and rope_scaling.get("rope_type", rope_scaling.get("type")) != "default":
            raise ValueError(f"`rope_scaling` is not supported by this LLaDA-MoE implementation, got {rope_scaling!r}")
        layer_kinds = [1] * num_hidden_layers if moe_layer_freq in (None, []) else list(moe_layer_freq)
        if len(layer_kinds) != num_hidden_layers:
            raise ValueError(f"`moe_layer_freq` must give one entry per layer (0 = dense, else MoE), got "
                             f"{len(layer_kinds)} entries for {num_hidden_layers} layers")
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = hidden_size, num_hidden_layers, num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = hidden_size // num_attention_heads  # the authors derive it; no `head_dim` key
        self.dense_intermediate_size, self.expert_intermediate_size = dense_intermediate_size, expert_intermediate_size
        self.shared_expert_intermediate_size = shared_expert_intermediate_size
        self.hidden_act, self.max_position_embeddings, self.rms_norm_eps = hidden_act, max_position_embeddings, rms_norm_eps
        self.rope_theta, self.partial_rotary_factor, self.attention_bias = rope_theta, partial_rotary_factor, attention_bias
        self.clip_qkv, self.num_experts, self.num_experts_per_tok = clip_qkv, num_experts, num_experts_per_tok
        self.qk_layernorm, self.moe_layer_freq = qk_layernorm, layer_kinds
        self.moe_router_enable_expert_bias, self.moe_router_score_function = moe_router_enable_expert_bias, moe_router_score_function
        self.mask_token_id = mask_token_id
        kwargs.pop("attn_implementation", None)  # attention is the library's backend, not a config choice
        super().__init__(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)


class LLaDAMoEAttention(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig, index: int) -> None:
        super().__init__()
        d, D, bias = cfg.hidden_size, cfg.head_dim, cfg.attention_bias
        self.index, self.n_heads, self.n_kv_heads, self.head_dim = index, cfg.num_attention_heads, cfg.num_key_value_heads, D
        self.q_proj = nn.Linear(d, self.n_heads * D, bias=bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * D, bias=bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * D, bias=bias)
        self.o_proj = nn.Linear(d, d, bias=bias)
        if cfg.qk_layernorm:
            self.q_norm = RMSNorm(D, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(D, cfg.rms_norm_eps)

    def forward(self, x: Tensor, ctx) -> Tensor:
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, L, self.n_kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        v = self.v_proj(x).view(B, L, self.n_kv_heads, self.head_dim)
        return self.o_proj(attend_heads(q, k, v, ctx, self.index))


class LLaDAMoESparseMoe(nn.Module):
    """`gate` (a bias-free linear router), the experts and, when enabled, the selection bias `expert_bias`."""

    def __init__(self, cfg: LLaDAMoEConfig) -> None:
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False)
        self.experts = nn.ModuleList(GatedMLP(cfg.hidden_size, cfg.expert_intermediate_size) for _ in range(cfg.num_experts))
        self.expert_bias: Tensor | None
        if cfg.moe_router_enable_expert_bias:
            self.register_buffer("expert_bias", torch.zeros(cfg.num_experts))
        else:
            self.expert_bias = None

    def forward(self, x: Tensor) -> Tensor:
        B, L, d = x.shape
        flat = x.reshape(B * L, d)
        chosen, weights = softmax_top_k(self.gate(flat), self.expert_bias, self.top_k)
        return dispatch(flat, self.experts, chosen, weights).view(B, L, d)


class LLaDAMoELayer(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig, index: int) -> None:
        super().__init__()
        moe = cfg.moe_layer_freq[index] != 0
        self.self_attn = LLaDAMoEAttention(cfg, index)
        self.mlp = LLaDAMoESparseMoe(cfg) if moe else GatedMLP(cfg.hidden_size, cfg.dense_intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if moe and cfg.shared_expert_intermediate_size is not None:
            self.shared_expert = GatedMLP(cfg.hidden_size, cfg.shared_expert_intermediate_size)

    def forward(self, x: Tensor, ctx) -> Tensor:
        x = add_residual(x, self.self_attn(self.input_layernorm(x), ctx))
        h = self.post_attention_layernorm(x)
        y = self.mlp(h)
        if hasattr(self, "shared_expert"):
            y = add_residual(y, self.shared_expert(h))  # the shared expert reads the same normed state
        return add_residual(x, y)


class LLaDAMoEBody(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(LLaDAMoELayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LLaDAMoEModelLM(DecoderStack, PreTrainedModel):
    """LLaDA-MoE with the library's forward: explicit positions, bool masks, a KV store and `logits_for`."""

    config_class = LLaDAMoEConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDAMoELayer"]

    def __init__(self, config: LLaDAMoEConfig) -> None:
        super().__init__(config)
        self.rotary = rotary_dims(config.head_dim, config.partial_rotary_factor)
        self.model = LLaDAMoEBody(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module)

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None) -> LogitsOutput:
        """input_ids [B, L] -> logits [B, L or n, V]; bidirectional attention over the unmasked keys."""
        return self.run_layers(input_ids, positions, attention_mask, cache, logits_for, attention, self.rotary)


def _register() -> None:
    from .registry import Architecture, register_variant

    register_variant("llada", lambda config: "num_experts" in config, Architecture(LLaDAMoEConfig, LLaDAMoEModelLM, shift=0))


_register()

"""LLaDA (OLMo-style block, bidirectional attention), with the published config keys and parameter names.

Checkpoints of LLaDA-8B-Base/Instruct and LLaDA-1.5 load unchanged: `model.transformer.wte`,
`model.transformer.blocks.N.{attn_norm,q_proj,k_proj,v_proj,attn_out,ff_norm,ff_proj,up_proj,ff_out}`,
`model.transformer.ln_f`, `model.transformer.ff_out` (the LM head). No logit shift.
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from .layers import (init_weights, LogitsOutput, RMSNorm, add_residual, attend, build_context, default_positions,
                     select_rows, swiglu)


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        max_sequence_length: int = 4096,
        rope_theta: float = 500000.0,
        rms_norm_eps: float = 1e-5,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        weight_tying: bool = False,
        mask_token_id: int = 126336,
        eos_token_id: int = 126081,
        pad_token_id: int = 126081,
        activation_type: str = "silu",
        block_type: str = "llama",
        layer_norm_type: str = "rms",
        rope: bool = True,
        alibi: bool = False,
        attention_layer_norm: bool = False,
        scale_logits: bool = False,
        **kwargs,
    ) -> None:
        unsupported = {
            "activation_type": (activation_type, "silu"), "block_type": (block_type, "llama"),
            "layer_norm_type": (layer_norm_type, "rms"), "rope": (rope, True), "alibi": (alibi, False),
            "attention_layer_norm": (attention_layer_norm, False), "scale_logits": (scale_logits, False),
        }
        for key, (got, want) in unsupported.items():
            if got != want:
                raise ValueError(f"`{key}` must be {want!r} for the LLaDA architecture implemented here, got {got!r}")
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.n_kv_heads = n_kv_heads or n_heads
        self.mlp_hidden_size, self.mlp_ratio = mlp_hidden_size, mlp_ratio
        self.embedding_size = embedding_size or vocab_size
        self.max_sequence_length, self.rope_theta, self.rms_norm_eps = max_sequence_length, rope_theta, rms_norm_eps
        self.include_bias, self.include_qkv_bias, self.weight_tying = include_bias, include_qkv_bias, weight_tying
        self.mask_token_id = mask_token_id
        self.activation_type, self.block_type, self.layer_norm_type = activation_type, block_type, layer_norm_type
        self.rope, self.alibi, self.attention_layer_norm, self.scale_logits = rope, alibi, attention_layer_norm, scale_logits
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(vocab_size=vocab_size, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def max_position_embeddings(self) -> int:
        return self.max_sequence_length

    @property
    def mlp_size(self) -> int:
        return self.mlp_hidden_size or self.mlp_ratio * self.d_model


class LLaDABlock(nn.Module):
    def __init__(self, cfg: LLaDAConfig, index: int) -> None:
        super().__init__()
        d, head_dim = cfg.d_model, cfg.d_model // cfg.n_heads
        qkv_bias = cfg.include_bias or cfg.include_qkv_bias
        self.index, self.n_heads, self.n_kv_heads = index, cfg.n_heads, cfg.n_kv_heads
        self.attn_norm = RMSNorm(d, cfg.rms_norm_eps, cfg.include_bias)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, cfg.n_kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, cfg.n_kv_heads * head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=cfg.include_bias)
        self.ff_norm = RMSNorm(d, cfg.rms_norm_eps, cfg.include_bias)
        self.ff_proj = nn.Linear(d, cfg.mlp_size, bias=cfg.include_bias)  # SiLU gate
        self.up_proj = nn.Linear(d, cfg.mlp_size, bias=cfg.include_bias)
        self.ff_out = nn.Linear(cfg.mlp_size, d, bias=cfg.include_bias)

    def forward(self, x: Tensor, ctx) -> Tensor:
        h = self.attn_norm(x)
        h = attend(self.q_proj(h), self.k_proj(h), self.v_proj(h), self.n_heads, self.n_kv_heads, ctx, self.index)
        x = add_residual(x, self.attn_out(h))
        return add_residual(x, swiglu(self.ff_norm(x), self.ff_proj, self.up_proj, self.ff_out))


class LLaDAModel(nn.Module):
    def __init__(self, cfg: LLaDAConfig) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(cfg.embedding_size, cfg.d_model),
            "blocks": nn.ModuleList(LLaDABlock(cfg, i) for i in range(cfg.n_layers)),
            "ln_f": RMSNorm(cfg.d_model, cfg.rms_norm_eps, cfg.include_bias),
        })
        if not cfg.weight_tying:
            self.transformer["ff_out"] = nn.Linear(cfg.d_model, cfg.embedding_size, bias=cfg.include_bias)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA with the library's forward: explicit positions, bool masks, a KV store and `logits_for`."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDABlock"]

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module)

    def lm_head(self, hidden: Tensor) -> Tensor:
        t = self.model.transformer
        if self.config.weight_tying:
            return nn.functional.linear(hidden, t["wte"].weight)
        return t["ff_out"](hidden)  # through the module, so a packed CPU linear (models/packed.py) applies

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None) -> LogitsOutput:
        """input_ids [B, L] -> logits [B, L or n, V]; `logits_for` [B, n] picks the rows for the head."""
        cfg, t = self.config, self.model.transformer
        positions = default_positions(input_ids) if positions is None else positions
        ctx = build_context(positions, cfg.d_model // cfg.n_heads, cfg.rope_theta, attention_mask,
                            input_ids.shape[1], cache, attention)
        x = t["wte"](input_ids)
        for block in t["blocks"]:
            x = block(x, ctx)
        x = t["ln_f"](select_rows(x, logits_for))
        return LogitsOutput(self.lm_head(x))

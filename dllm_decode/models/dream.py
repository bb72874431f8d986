"""Dream (Qwen2 layout, bidirectional attention, shifted logits), with the published names and config keys.

Dream-v0-Base/Instruct-7B checkpoints load unchanged: `model.embed_tokens`, `model.layers.N.{input_layernorm,
post_attention_layernorm, self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}`, `model.norm`, `lm_head`.
The forward returns logits as the authors' forward does (row i = prediction from hidden state i);
the one-position shift that Dream's generation applies lives in the adapter (`shift=1`).
"""
from __future__ import annotations

from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from .layers import DecoderStack, GatedMLP, init_weights, LogitsOutput, RMSNorm, add_residual, attend


class DreamConfig(PretrainedConfig):
    model_type = "Dream"

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int = 4,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1e6,
        rope_scaling: dict | None = None,
        attention_bias: bool = True,
        tie_word_embeddings: bool = False,
        mask_token_id: int = 151666,
        pad_token_id: int = 151643,
        bos_token_id: int = 151643,
        eos_token_id: int = 151643,
        **kwargs,
    ) -> None:
        if hidden_act != "silu":
            raise ValueError(f"`hidden_act` must be 'silu' for the Dream architecture implemented here, got {hidden_act!r}")
        if rope_scaling not in (None, {}) and rope_scaling.get("rope_type", rope_scaling.get("type")) != "default":
            raise ValueError(f"`rope_scaling` is not supported by this Dream implementation, got {rope_scaling!r}")
        self.hidden_size, self.intermediate_size = hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.hidden_act, self.max_position_embeddings = hidden_act, max_position_embeddings
        self.rms_norm_eps, self.rope_theta = rms_norm_eps, rope_theta
        self.attention_bias, self.mask_token_id = attention_bias, mask_token_id
        super().__init__(vocab_size=vocab_size, tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)


class QwenAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, bias: bool, index: int) -> None:
        super().__init__()
        self.index, self.n_heads, self.n_kv_heads = index, heads, kv_heads
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x: Tensor, ctx) -> Tensor:
        h = attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.n_heads, self.n_kv_heads, ctx, self.index)
        return self.o_proj(h)


class QwenLayer(nn.Module):
    """Pre-norm Qwen2 decoder layer."""

    def __init__(self, cfg, index: int) -> None:
        super().__init__()
        self.self_attn = QwenAttention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                                       cfg.head_dim, cfg.attention_bias, index)
        self.mlp = GatedMLP(cfg.hidden_size, cfg.intermediate_size)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x: Tensor, ctx) -> Tensor:
        x = add_residual(x, self.self_attn(self.input_layernorm(x), ctx))
        return add_residual(x, self.mlp(self.post_attention_layernorm(x)))


class QwenBody(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(QwenLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DreamModel(DecoderStack, PreTrainedModel):
    """Dream with the library's forward: explicit positions, bool masks, a KV store and `logits_for`."""

    config_class = DreamConfig
    base_model_prefix = "model"
    _no_split_modules = ["QwenLayer"]

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        self.model = QwenBody(config)
        if not config.tie_word_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_weights(module)

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None) -> LogitsOutput:
        """input_ids [B, L] -> unshifted logits [B, L or n, V]; `logits_for` [B, n] picks hidden rows."""
        return self.run_layers(input_ids, positions, attention_mask, cache, logits_for, attention, self.config.head_dim)

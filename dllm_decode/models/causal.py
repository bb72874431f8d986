"""The AR target path: any transformers causal LM (Llama, Qwen2, Qwen3, ...) behind the adapter interface.

`load_causal_lm(dir)` (which `load_model` calls for any causal-LM checkpoint, e.g. "tiny-ar") builds the
checkpoint with transformers' own built-in architecture (no remote code) and returns a `CausalLM`: a
`DiffusionLM` with `shift=1` (position i is predicted from hidden state i-1), so `Sampler(...).generate`
accepts it as the model to decode, plus `step`, an incremental forward over the model's own KV cache.
Such a model has no mask token: it is only ever fed verified tokens and drafts, so it decodes through
`Sampler("deer", drafter=...)`, never by denoising. A bare transformers causal LM passed to
`Sampler.generate` is wrapped by `as_causal_target`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .adapter import DiffusionLM
from .directory import end_of_text_ids, load_tokenizer, resolve_dtype, resolve_path
from .registry import ARCHITECTURES


@dataclass
class CausalLM(DiffusionLM):
    """An autoregressive LM as a decoding target. `mask_id` is a placeholder the target never sees."""

    autoregressive = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shift != 1 or self.native:
            raise ValueError(f"a CausalLM has `shift=1` and `native=False`, got shift={self.shift}, native={self.native}")

    def forward(self, input_ids: Tensor, **kwargs: Any) -> Tensor:
        raise ValueError(f"{self.name} is an autoregressive target with no mask token, so it cannot denoise a "
                         "canvas; decode it with Sampler(\"deer\", drafter=...)")

    __call__ = forward

    @torch.no_grad()
    def step(self, input_ids: Tensor, *, positions: Tensor, attention_mask: Tensor, past: Any) -> tuple[Tensor, Any]:
        """Incremental forward: new tokens [B, n] at `positions` [B, n] after the `past` cache (None at first).

        `attention_mask` [B, S + n] bool covers cached and new columns. Returns unshifted logits [B, n, V]
        (row i predicts the token after input i) and the updated cache.
        """
        if past is None:
            from transformers import DynamicCache

            past = DynamicCache()
        # transformers >= 5.25 names the cache `cache` (the old `past_key_values` warns); older releases take
        # only `past_key_values`. `accepts` records which one this module's forward declares.
        key = "cache" if "cache" in self.accepts else "past_key_values"
        out = self.module(input_ids=input_ids, attention_mask=attention_mask.long(), position_ids=positions,
                          use_cache=True, **{key: past})
        return out.logits, out["cache" if "cache" in self.accepts else "past_key_values"]

    @staticmethod
    def truncate(past: Any, length: int) -> None:
        """Keep the first `length` cached columns (a negative `crop` removes tokens in every transformers version)."""
        remove = past.get_seq_length() - length
        if remove > 0:
            past.crop(-remove)


def wrap_causal_lm(module: nn.Module, *, tokenizer: Any = None, eos_ids: tuple[int, ...] | list[int] | int | None = None,
                   mask_id: int | None = None, pad_id: int | None = None, max_length: int | None = None,
                   name: str | None = None) -> CausalLM:
    """Adapt a transformers causal LM module (its forward takes `past_key_values` and returns `.logits`)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"`module` must be a torch.nn.Module, got {type(module).__name__}")
    config = getattr(module, "config", None)
    if eos_ids is None:
        eos = end_of_text_ids(config, tokenizer) if config is not None else ()
    else:
        eos = (eos_ids,) if isinstance(eos_ids, int) else tuple(int(e) for e in eos_ids)
    if not eos:
        raise ValueError("`eos_ids` must be given: the module's config and tokenizer name no end-of-text token")
    if mask_id is None:  # the canvas placeholder: the drafter's mask id replaces it before any drafter forward
        mask_id = getattr(tokenizer, "mask_token_id", None)
        mask_id = mask_id if mask_id is not None else int(getattr(config, "vocab_size", 0))
    if pad_id is None:
        pad_id = getattr(config, "pad_token_id", None)
    if max_length is None:
        max_length = getattr(config, "max_position_embeddings", None)
    accepts = frozenset(p for p in ("cache",) if p in inspect.signature(module.forward).parameters)
    gen_length = getattr(getattr(module, "generation_config", None), "max_new_tokens", None)
    return CausalLM(module.eval(), int(mask_id), eos, 1, tokenizer, max_length, pad_id, native=False,
                    name=name or type(module).__name__, accepts=accepts, gen_length=gen_length)


def is_causal_lm_type(model_type: str | None) -> bool:
    """True when transformers builds `model_type` as a causal LM with its own code (no remote code)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    known = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    return model_type is not None and model_type not in ARCHITECTURES and known


def as_causal_target(module: Any) -> Any:
    """A plain transformers causal LM (`PreTrainedModel`, e.g. LlamaForCausalLM) wrapped as a `CausalLM`;
    anything else is returned unchanged."""
    from transformers import PreTrainedModel

    if isinstance(module, PreTrainedModel) and is_causal_lm_type(getattr(module.config, "model_type", None)):
        return wrap_causal_lm(module, name=Path(getattr(module.config, "name_or_path", "")).name or None)
    return module


def load_causal_lm(path_or_name: str | Path, *, dtype: str | torch.dtype | None = None,
                   device: str | torch.device | None = None, eos_ids: tuple[int, ...] | None = None) -> CausalLM:
    """A local causal-LM checkpoint directory (or zoo name, e.g. "tiny-ar") -> `CausalLM`; nothing is downloaded."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_path(path_or_name)
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    if config.model_type in ARCHITECTURES:
        raise ValueError(f"{path} holds a diffusion LM ({config.model_type!r}); load it with `load_model`, "
                         "not `load_causal_lm`")
    device = torch.device(device) if device is not None else torch.device("cpu")
    module = AutoModelForCausalLM.from_pretrained(str(path), dtype=resolve_dtype(dtype, device), local_files_only=True,
                                                  trust_remote_code=False).to(device)
    return wrap_causal_lm(module, tokenizer=load_tokenizer(path), eos_ids=eos_ids, name=path.name)

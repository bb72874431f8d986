"""DiffusionGemma through transformers' own class: load a checkpoint, adapt it for the uniform-noise loop.

DiffusionGemma (`transformers.DiffusionGemmaForBlockDiffusion`) is not a masked model: an encoder reads the
prompt (and each finished canvas) into a KV cache; a decoder re-predicts a canvas of `canvas_length` random
tokens, self-conditioned on its previous step's logits. It decodes only through `loop="uniform"`
(`dllm_decode/uniform.py`); the adapter carries what that loop needs: the module, the canvas length, the
vocabulary size and the checkpoint's generation defaults (its `generation_config.json` over transformers'
global defaults, the settings `model.generate()` uses when given none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .adapter import DiffusionLM

# settings of transformers' DiffusionGemma `generate` that the uniform loop reproduces
GENERATION_KEYS = ("max_denoising_steps", "t_min", "t_max", "stability_threshold", "confidence_threshold")
NO_MASK = -1  # the canvas holds no mask token: -1 marks columns the loop has not decoded yet


@dataclass
class DiffusionGemmaLM(DiffusionLM):
    """A DiffusionGemma model ready for `Sampler(..., loop="uniform")`. Build with `load_model` or
    `wrap_diffusion_gemma`. `generation` holds the resolved generation defaults plus `entropy_bound`,
    `eos_token_id` (list or None) and `pad_token_id`."""

    canvas_length: int = 0
    vocab_size: int = 0
    generation: dict[str, Any] = field(default_factory=dict)

    def forward(self, input_ids: Tensor, **_: Any) -> Tensor:
        raise ValueError(f"`model` {self.name} is DiffusionGemma, a uniform-noise model with no mask token, so the "
                         f"masked-model loops cannot run it; use `Sampler(..., loop=\"uniform\")`")

    __call__ = forward


def generation_defaults(module: torch.nn.Module) -> dict[str, Any]:
    """The settings `module.generate()` runs with when given none: its generation config over the defaults."""
    from transformers import DiffusionGemmaGenerationConfig

    defaults = DiffusionGemmaGenerationConfig._get_default_generation_params()
    own = module.generation_config
    resolved = {key: getattr(own, key, None) if getattr(own, key, None) is not None else defaults[key]
                for key in GENERATION_KEYS}
    sampler = own.sampler_config if own.sampler_config is not None else defaults["sampler_config"]
    resolved["entropy_bound"] = sampler.entropy_bound
    eos = own.eos_token_id
    resolved["eos_token_id"] = None if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    resolved["pad_token_id"] = own.pad_token_id
    return resolved


def wrap_diffusion_gemma(module: torch.nn.Module, tokenizer: Any = None, eos_ids: tuple[int, ...] | None = None,
                         name: str | None = None) -> DiffusionGemmaLM:
    """Adapt a `DiffusionGemmaForBlockDiffusion` (already built or loaded) for decoding."""
    from transformers import DiffusionGemmaForBlockDiffusion

    if not isinstance(module, DiffusionGemmaForBlockDiffusion):
        raise ValueError("`module` must be a transformers DiffusionGemmaForBlockDiffusion, got "
                         f"{type(module).__name__}; for our own architectures use `wrap`")
    text = module.config.text_config
    generation = generation_defaults(module)
    if eos_ids is None:
        eos = generation["eos_token_id"] or text.eos_token_id
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
    pad = generation["pad_token_id"] if generation["pad_token_id"] is not None else text.pad_token_id
    return DiffusionGemmaLM(module.eval(), NO_MASK, tuple(int(e) for e in eos_ids), 0, tokenizer,
                            text.max_position_embeddings, pad, native=False, name=name or type(module).__name__,
                            canvas_length=int(module.config.canvas_length), vocab_size=int(text.vocab_size),
                            generation=generation)


def load_diffusion_gemma(path: Path, *, dtype: torch.dtype, device: torch.device, mask_id: int | None = None,
                         eos_ids: tuple[int, ...] | None = None) -> DiffusionGemmaLM:
    """A local DiffusionGemma checkpoint directory through transformers' class (safetensors, nothing downloaded)."""
    from transformers import DiffusionGemmaForBlockDiffusion

    from .directory import load_tokenizer

    if mask_id is not None:
        raise ValueError(f"`mask_id` must be None for DiffusionGemma, which has no mask token, got {mask_id!r}; "
                         "drop `mask_id=`")
    module = DiffusionGemmaForBlockDiffusion.from_pretrained(str(path), dtype=dtype, local_files_only=True,
                                                             use_safetensors=True)
    module = module.to(device).eval().requires_grad_(False)
    return wrap_diffusion_gemma(module, load_tokenizer(path), eos_ids, name=path.name)

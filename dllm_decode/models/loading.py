"""`load_model`: a local checkpoint directory (or an embedded zoo name) -> a ready `DiffusionLM`.

Only safetensors are read (no pickle), parameter names must match exactly (`strict`), and the weights
are materialised once: the module is built on the meta device and the loaded tensors are assigned.
Nothing is downloaded: these paths must work with no model hub.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .adapter import DiffusionLM, checkpoint_gen_length
from .checkpoint import CheckpointError, checked_state_dict, read_config, read_state_dict  # noqa: F401 (re-export)
from .directory import (ZOO_DIR, build_config, end_of_text_ids, load_tokenizer, resolve_device,  # noqa: F401
                        resolve_dtype, resolve_mask_id, resolve_path, zoo_names)
from .packed import pack_linears
from .registry import ARCHITECTURES, architecture_for


def load_model(path_or_name: str | Path, *, dtype: str | torch.dtype | None = None,
               device: str | torch.device | None = None, mask_id: int | None = None,
               eos_ids: tuple[int, ...] | None = None, pack: bool = True) -> DiffusionLM:
    """Load a LLaDA / Dream (or other registered) checkpoint directory, or an embedded zoo model by name.
    A transformers causal-LM checkpoint (Llama, Qwen2, ...) loads as a `CausalLM`, DEER's target.

    Every problem with the directory raises a one-line `CheckpointError` (a `ValueError`) naming the file.
    `pack`: on CPU in fp32, linear layers run on oneDNN pre-packed weights (`models/packed.py`: faster,
    row-count invariant; costs a second copy of the linear weights). `"oracle"`: the exact denoiser of the
    task suite (`models/oracle.py`; it has no linear layers, so `pack` changes nothing)."""
    device = resolve_device(device)  # first, so that every kind of checkpoint gets the same refusal
    if str(path_or_name) == "oracle" and not Path(path_or_name).is_dir():
        from .oracle import load_oracle

        return load_oracle(device=device, dtype=dtype, mask_id=mask_id, eos_ids=eos_ids)
    path = resolve_path(path_or_name)
    config_dict = read_config(path)
    model_type = config_dict.get("model_type")
    if model_type == "diffusion_gemma":  # transformers' own class, a uniform-noise model: models/diffusion_gemma.py
        from .diffusion_gemma import load_diffusion_gemma

        return load_diffusion_gemma(path, dtype=resolve_dtype(dtype, device), device=device, mask_id=mask_id,
                                    eos_ids=eos_ids)
    if model_type not in ARCHITECTURES:
        from .causal import is_causal_lm_type, load_causal_lm  # an AR checkpoint (DEER's target, e.g. tiny-ar)

        if is_causal_lm_type(model_type):
            return load_causal_lm(path, dtype=dtype, device=device, eos_ids=eos_ids)
        raise CheckpointError(f"`model_type` in {path / 'config.json'} must be one of {sorted(ARCHITECTURES)}, got "
                              f"{model_type!r}; for another architecture build the module yourself and use `wrap`")
    arch = architecture_for(config_dict)
    config = build_config(arch, config_dict, path / "config.json")
    mask = resolve_mask_id(config, config_dict, mask_id, path / "config.json")
    dtype = resolve_dtype(dtype, device)
    with torch.device("meta"):
        module = arch.model_class(config)
    module.load_state_dict(checked_state_dict(module, path, model_type), strict=True, assign=True)
    module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if pack and device.type == "cpu":
        pack_linears(module)
    tokenizer = load_tokenizer(path)
    eos = tuple(eos_ids) if eos_ids is not None else end_of_text_ids(config, tokenizer)
    return DiffusionLM(module, mask, eos, arch.shift, tokenizer, config.max_position_embeddings,
                       getattr(config, "pad_token_id", None), native=True, name=path.name,
                       block_size=getattr(config, "block_size", None), gen_length=checkpoint_gen_length(path))

"""`load_model`: a local checkpoint directory (or an embedded zoo name) -> a ready `DiffusionLM`.

Only safetensors are read (no pickle), parameter names must match exactly (`strict`), and the weights
are materialised once: the module is built on the meta device and the loaded tensors are assigned.
Nothing is downloaded: these paths must work with no model hub.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from .adapter import DiffusionLM
from .packed import pack_linears
from .registry import ARCHITECTURES

log = logging.getLogger(__name__)

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "</s>")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def zoo_names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file()) if ZOO_DIR.is_dir() else []


def resolve_path(path_or_name: str | Path) -> Path:
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path
    zoo = ZOO_DIR / str(path_or_name)
    if (zoo / "config.json").is_file():
        return zoo
    raise ValueError(f"`path_or_name` must be a local checkpoint directory or one of the embedded models "
                     f"{zoo_names()}, got {str(path_or_name)!r} (nothing is downloaded from a hub)")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be a torch.dtype or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded (`model.safetensors.index.json`) safetensors checkpoint."""
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else \
        sorted(p.name for p in path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no *.safetensors file in {str(path)!r}; only safetensors checkpoints are loaded (no pickle)")
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(path / name)))
    return state


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer with its chat template, or None when the directory has none."""
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    except (ValueError, OSError) as err:  # e.g. Dream names a remote-code tokenizer class; its files are plain BPE
        if (path / "tokenizer.json").is_file():
            log.warning("AutoTokenizer failed (%s); loading tokenizer.json directly", err)
            return PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
        from transformers import Qwen2TokenizerFast

        return Qwen2TokenizerFast(vocab_file=str(path / "vocab.json"), merges_file=str(path / "merges.txt"))


def end_of_text_ids(config, tokenizer) -> tuple[int, ...]:
    """EOS plus end-of-turn ids: a chat model ends its answer with EoT, then pads with EOS."""
    ids: list[int] = []
    eos = getattr(config, "eos_token_id", None)
    ids += eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab()
        ids += [vocab[t] for t in END_OF_TURN_TOKENS if t in vocab]
    return tuple(dict.fromkeys(int(i) for i in ids))


def load_model(path_or_name: str | Path, *, dtype: str | torch.dtype | None = None,
               device: str | torch.device | None = None, mask_id: int | None = None,
               eos_ids: tuple[int, ...] | None = None, pack: bool = True) -> DiffusionLM:
    """Load a LLaDA / Dream (or other registered) checkpoint directory, or an embedded zoo model by name.

    `pack`: on CPU in fp32, linear layers run on oneDNN pre-packed weights (`models/packed.py`: faster,
    row-count invariant; costs a second copy of the linear weights)."""
    path = resolve_path(path_or_name)
    config_dict = json.loads((path / "config.json").read_text())
    model_type = config_dict.get("model_type")
    if model_type == "diffusion_gemma":  # transformers' own class, a uniform-noise model: models/diffusion_gemma.py
        from .diffusion_gemma import load_diffusion_gemma

        device = torch.device(device) if device is not None else torch.device("cpu")
        return load_diffusion_gemma(path, dtype=resolve_dtype(dtype, device), device=device, mask_id=mask_id,
                                    eos_ids=eos_ids)
    if model_type not in ARCHITECTURES:
        raise ValueError(f"`model_type` in {path / 'config.json'} must be one of {sorted(ARCHITECTURES)}, got "
                         f"{model_type!r}; for another architecture build the module yourself and use `wrap`")
    arch = ARCHITECTURES[model_type]
    config = arch.config_class.from_dict(config_dict)
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = resolve_dtype(dtype, device)
    with torch.device("meta"):
        module = arch.model_class(config)
    module.load_state_dict(read_state_dict(path), strict=True, assign=True)
    module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if pack and device.type == "cpu":
        pack_linears(module)
    tokenizer = load_tokenizer(path)
    mask = mask_id if mask_id is not None else getattr(config, "mask_token_id", None)
    if mask is None:
        raise ValueError(f"{path / 'config.json'} has no `mask_token_id`; pass `mask_id=` to `load_model`")
    eos = tuple(eos_ids) if eos_ids is not None else end_of_text_ids(config, tokenizer)
    return DiffusionLM(module, int(mask), eos, arch.shift, tokenizer, config.max_position_embeddings,
                       getattr(config, "pad_token_id", None), native=True, name=path.name)

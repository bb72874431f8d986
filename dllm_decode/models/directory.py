"""What a local checkpoint directory holds, resolved: its path (or a zoo name), dtype, device, config,
mask id, tokenizer and end-of-text ids. Shared by every loader (`loading.py`, `causal.py`)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .checkpoint import CheckpointError

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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device that exists here (CPU when None): a CUDA device on a CPU-only build, or
    a GPU index beyond the visible ones, is refused now rather than as an AssertionError deep in `.to`."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"`device` must name a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = f"this torch build ({torch.__version__}) has no CUDA support" if torch.version.cuda is None else \
                "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            raise ValueError(f"`device` {str(device)!r} needs a CUDA GPU, but {why}; use `device='cpu'` "
                             "(CLI: `--device cpu`)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"`device` {str(device)!r} names GPU {dev.index}, but {count} GPU(s) are visible; use "
                             f"an index in 0..{count - 1}")
    elif dev.type != "cpu":
        try:
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"`device` {str(device)!r} is not usable here ({err}); use `device='cpu'`") from None
    return dev


def build_config(arch, config_dict: dict, config_file: Path):
    """The architecture's config from config.json; its own validation errors get the file's name."""
    try:
        return arch.config_class.from_dict(config_dict)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{config_file}: {err}") from None


def resolve_mask_id(config, config_dict: dict, mask_id: int | None, config_file: Path) -> int:
    """`mask_id`, else config.json's `mask_token_id`, else the architecture's published default, which is
    used only when it lies inside the vocabulary (LLaDA's 126336 would index past a small model's)."""
    vocab = getattr(config, "vocab_size", None)
    if mask_id is not None:
        mask, source = mask_id, "`mask_id`"
    elif "mask_token_id" in config_dict:
        mask, source = config_dict["mask_token_id"], f"`mask_token_id` in {config_file}"
    else:
        mask, source = getattr(config, "mask_token_id", None), None
    if mask is None:
        raise CheckpointError(f"{config_file} has no `mask_token_id`; pass the mask token's id with "
                              "`load_model(..., mask_id=ID)` or add `mask_token_id` to config.json")
    in_vocab = isinstance(mask, int) and not isinstance(mask, bool) and 0 <= mask and (vocab is None or mask < vocab)
    if source is None and not in_vocab:
        raise CheckpointError(f"{config_file} has no `mask_token_id`, and the {type(config).__name__} default {mask} "
                              f"is outside its vocabulary (vocab_size={vocab}); pass the mask token's id with "
                              "`load_model(..., mask_id=ID)` or add `mask_token_id` to config.json")
    if not in_vocab:
        raise CheckpointError(f"{source} must be a token id in [0, {vocab}) (vocab_size of {config_file}), got "
                              f"{mask!r}; pass the id of this model's mask token with `load_model(..., mask_id=ID)`")
    if source is None:
        log.warning("%s has no `mask_token_id`; using the %s default %d (pass `mask_id=` if this model's mask "
                    "token differs)", config_file, type(config).__name__, mask)
    return mask

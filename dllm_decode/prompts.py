"""Turn what a user passes as a prompt into a list of 1-D token tensors on the model's device."""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from .models.adapter import DiffusionLM


def encode_text(model: DiffusionLM, text: str, chat_template: bool | None) -> list[int]:
    tok = model.tokenizer
    if tok is None:
        raise ValueError(f"{model.name} has no tokenizer, so `prompt` must be token ids (a LongTensor or a list "
                         "of them), got a string")
    has_template = getattr(tok, "chat_template", None) is not None
    if chat_template and not has_template:
        raise ValueError(f"`chat_template=True` but the tokenizer of {model.name} has no chat template")
    if has_template and chat_template is not False:
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      tokenize=True)
        ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    else:
        ids = tok(text, add_special_tokens=False).input_ids
    warn_unknown_words(model, text, ids)
    return ids


def warn_unknown_words(model: DiffusionLM, text: str, ids: list[int]) -> None:
    """Say when a prompt lost words to the unknown token. Why: the zoo's word-level tokenizers know only
    their task suite's vocabulary, and a prompt with unknown names decodes to confident nonsense; BPE
    tokenizers of real checkpoints never emit it, so they are not affected."""
    unk = getattr(model.tokenizer, "unk_token_id", None)
    if unk is None or unk not in ids:
        return
    count = sum(i == unk for i in ids)
    warnings.warn(f"{count} token(s) of the prompt {text[:60]!r} are outside the vocabulary of {model.name}'s "
                  f"tokenizer and became {model.tokenizer.unk_token!r}; the output will not be meaningful (the tiny "
                  "zoo models know only the names and words of their task suite)",
                  UserWarning, stacklevel=7)  # the caller of Sampler.generate or .start (past no_grad, _new_request)


def encode_prompts(model: DiffusionLM, prompt: Any, chat_template: bool | None) -> list[Tensor]:
    """str | list[str] | LongTensor [L] or [B, L] | list of 1-D LongTensors -> list of [L_b] tensors."""
    device = model.device
    if isinstance(prompt, str):
        prompt = [prompt]
    if isinstance(prompt, Tensor):
        if prompt.dtype not in (torch.long, torch.int32, torch.int64) or prompt.dim() not in (1, 2):
            raise ValueError(f"`prompt` tensor must be integer ids of shape [L] or [B, L], got {prompt.dtype} "
                             f"{tuple(prompt.shape)}")
        prompt = [prompt] if prompt.dim() == 1 else list(prompt)
    if not isinstance(prompt, (list, tuple)) or len(prompt) == 0:
        raise ValueError(f"`prompt` must be a string, a non-empty list of strings, or token ids, got {prompt!r}")
    out: list[Tensor] = []
    for item in prompt:  # once per request
        if isinstance(item, str):
            ids = torch.tensor(encode_text(model, item, chat_template), dtype=torch.long)
        elif isinstance(item, Tensor) and item.dim() == 1:
            ids = item.long()
        elif isinstance(item, (list, tuple)) and all(isinstance(i, int) for i in item):
            ids = torch.tensor(list(item), dtype=torch.long)
        else:
            raise ValueError(f"each prompt must be a string, a 1-D LongTensor or a list of ints, got {type(item).__name__}")
        if ids.numel() == 0:
            raise ValueError("`prompt` must not be empty: a diffusion LM needs at least one prompt token, got an "
                             "empty prompt")
        out.append(ids.to(device))
    check_vocabulary(model, out)
    return out


def vocabulary_size(model: DiffusionLM) -> int | None:
    """The number of token ids the module embeds (its config's `vocab_size`, else its input embedding's
    rows), or None for a foreign module that exposes neither."""
    size = getattr(getattr(model.module, "config", None), "vocab_size", None)
    if isinstance(size, int):
        return size
    try:
        table = model.module.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # a plain nn.Module, or a PreTrainedModel that does not say
        return None
    return getattr(table, "num_embeddings", None)


def check_vocabulary(model: DiffusionLM, prompts: list[Tensor]) -> None:
    """Refuse ids outside [0, V): the embedding would raise an IndexError (or a CUDA assert) mid-decode."""
    size = vocabulary_size(model)
    if size is None:
        return
    ids = torch.cat(prompts)
    outside = (ids < 0) | (ids >= size)
    if bool(outside.any()):  # one host sync per request batch, before any forward
        bad = ids[outside]
        raise ValueError(f"`prompt` token ids must be in [0, {size}) for {model.name}'s vocabulary of {size} tokens, "
                         f"got {int(bad[0])} ({bad.numel()} id(s) outside); encode prompts with this model's "
                         "tokenizer")

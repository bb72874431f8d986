"""What a ParallelBench sample sends to the model: its chat turns as token ids, and in infill mode a canvas.

Turns go through the tokenizer's chat template with a generation prompt (as the authors call it), or
through `plain_join` when the tokenizer has none or the sampler sets `chat_template=False`.

Infill (the authors' dLLM option): the canvas starts from the record's `output_format`, e.g.
`["[MASK]", "[MASK]"]`, tokenized with the model's tokenizer after each `[MASK]` is replaced by
`slot_tokens` copies of the model's mask token, then right-padded with the model's pad token to
`gen_length`. The quotes, commas and brackets are given; only the mask positions are decoded.
Mapping: each `[MASK]` is exactly `slot_tokens` mask tokens (1 in the authors' code). A name that takes
more tokens than its slot cannot be written whole, and a slot longer than its name must be completed
with tokens that decode to nothing (special tokens are dropped when the canvas is decoded to text). A
record without `output_format` starts from an all-mask canvas, as in the authors' code (in the published
files: the puzzles and the Waiting Line's reverse, sort and remove_index).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...models.adapter import DiffusionLM
from .data import BenchSample, plain_join

FORMAT_MASK = "[MASK]"


def _tokenizer(model: DiffusionLM) -> Any:
    if model.tokenizer is None:
        raise ValueError(f"`model` must have a tokenizer to render ParallelBench's chat turns, got {model.name} "
                         "without one; load a checkpoint directory that holds its tokenizer files")
    return model.tokenizer


def render(model: DiffusionLM, sample: BenchSample, chat_template: bool | None = None) -> str:
    """The exact text sent for `sample`: the chat template over its turns, or the plain join."""
    tok = _tokenizer(model)
    has_template = getattr(tok, "chat_template", None) is not None
    if chat_template and not has_template:
        raise ValueError(f"`chat_template=True` but the tokenizer of {model.name} has no chat template")
    if has_template and chat_template is not False:
        return tok.apply_chat_template(list(sample.messages), add_generation_prompt=True, tokenize=False)
    return plain_join(sample.messages)


def prompt_ids(model: DiffusionLM, sample: BenchSample, chat_template: bool | None = None) -> list[int]:
    """Token ids of `render(...)`; the template already holds any special tokens, so none are added."""
    return list(_tokenizer(model)(render(model, sample, chat_template), add_special_tokens=False).input_ids)


def canvas_row(model: DiffusionLM, sample: BenchSample, gen_length: int, slot_tokens: int = 1) -> list[int]:
    """One infill canvas row of `gen_length` ids (see the module docstring for the mapping)."""
    if sample.output_format is None:
        return [model.mask_id] * gen_length
    tok = _tokenizer(model)
    mask_text = tok.convert_ids_to_tokens(model.mask_id)
    slots = sample.output_format.count(FORMAT_MASK)
    ids = list(tok(sample.output_format.replace(FORMAT_MASK, mask_text * slot_tokens),
                   add_special_tokens=False).input_ids)
    if ids.count(model.mask_id) != slots * slot_tokens:
        raise ValueError(f"{sample.source}: `output_format` must tokenize to {slot_tokens} mask token(s) per "
                         f"{FORMAT_MASK} ({slots} slots), got {ids.count(model.mask_id)} from {sample.output_format!r}")
    if len(ids) > gen_length:
        raise ValueError(f"`gen_length` must hold the infill canvas of {sample.source} ({len(ids)} tokens), got "
                         f"{gen_length}; raise --gen-length")
    return ids + [model.pad_id] * (gen_length - len(ids))


def batch_inputs(model: DiffusionLM, samples: list[BenchSample], gen_length: int, infill: bool,
                 chat_template: bool | None = None, slot_tokens: int = 1) -> tuple[list[list[int]], Tensor | None]:
    """(prompt ids per sample, canvas [B, gen_length] in infill mode else None)."""
    prompts = [prompt_ids(model, s, chat_template) for s in samples]
    if not infill:
        return prompts, None
    rows = [canvas_row(model, s, gen_length, slot_tokens) for s in samples]
    return prompts, torch.tensor(rows, dtype=torch.long, device=model.device)


def decode_canvas(model: DiffusionLM, canvas: Tensor) -> list[str]:
    """Each row's whole canvas as text with special tokens dropped, as the authors decode in both modes.
    Unlike `GenerationResult.text` it does not stop at the first EOS: in infill mode a slot decoded as EOS
    would otherwise cut off the given closing quote and bracket after it."""
    tok = _tokenizer(model)
    return [tok.decode(row, skip_special_tokens=True) for row in canvas.tolist()]


def decoded_tokens(start: Tensor, ends: list[int], mask_id: int) -> list[int]:
    """Per row, the tokens the model generated before the first EOS: the mask positions of the starting
    canvas `start` [B, G] left of `ends` [B]. In infill mode the given quotes and commas are not generated,
    so counting them would inflate tokens per forward."""
    cols = torch.arange(start.shape[1], device=start.device)
    before = cols[None, :] < torch.tensor(ends, device=start.device)[:, None]
    return ((start == mask_id) & before).sum(1).tolist()

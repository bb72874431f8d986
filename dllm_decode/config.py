"""DecodeConfig: the options every sampler shares, validated once at construction.

Rule-specific options (threshold, factor, ...) live on the rule's own frozen dataclass. Option names
follow the reference code: gen_length, block_length, steps, temperature, cfg_scale, remasking.
`fit_lengths` resolves the lengths a user left open against the model that `generate` receives.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

from . import validation


class ModelLengths(Protocol):
    """The facts of a model that its lengths are fitted to (`models.adapter.DiffusionLM` implements it)."""

    name: str
    max_length: int | None  # context length
    block_size: int | None  # block-diffusion models' block, else None
    gen_length: int | None  # the checkpoint's own generation length (generation_config.json), else None

DEFAULT_GEN_LENGTH = 128  # the canvas when the model's context leaves room for it (LLaDA's published default)


@dataclass(frozen=True)
class DecodeConfig:
    gen_length: int = DEFAULT_GEN_LENGTH  # left unset, `fit_lengths` fits it to the model's context
    block_length: int | None = None  # None: the model's block size, else the rule's default (32, or one block)
    steps: int | None = None  # step budget for top-k rules; None: one token per step
    temperature: float = 0.0
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    blocks: str = "fixed"  # block schedule (see samplers.blocks.BLOCKS)
    early_commit: str | None = None  # early-commit rule (see samplers.early.EARLY_COMMITS), None for none
    eos_fill: bool | str = False  # end-of-text fill: after a settled EOS the rest is EOS; "block": at block ends
    cache: str = "none"  # KV cache strategy (see cache.CACHES)
    attention: str = "dense"  # attention backend (see kernels.ATTENTION)
    loop: str = "denoise"  # how forwards are spent (see plan.LOOPS)
    revision: str = "none"  # takes committed tokens back: none, wino or editing (see samplers.revision.REVISIONS)
    seed: int | None = None
    chat_template: bool | None = None  # None: apply the tokenizer's chat template when it has one
    trace: bool = False

    def __post_init__(self) -> None:
        validation.integer("gen_length", self.gen_length, low=1, fix="e.g. gen_length=128")
        validation.integer("block_length", self.block_length, low=1, none="fitted to the model and rule",
                           fix="e.g. block_length=32")
        block = self.block_length
        if block is not None and (block > self.gen_length or self.gen_length % block):
            raise ValueError(f"`block_length` must divide `gen_length` ({self.gen_length}), got "
                             f"{self.block_length}; e.g. block_length={_divisor_hint(self.gen_length)}")
        validation.integer("steps", self.steps, low=1, none="one token per step", fix="e.g. steps=gen_length")
        validation.number("temperature", self.temperature, low=0, fix="0 is greedy decoding")
        validation.number("cfg_scale", self.cfg_scale, low=0, fix="0 is no guidance")
        for key in ("logits_eos_inf", "confidence_eos_eot_inf", "trace"):
            validation.flag(key, getattr(self, key))
        validation.flag("chat_template", self.chat_template, none="the tokenizer's template when it has one")
        if not (isinstance(self.eos_fill, bool) or self.eos_fill == "block"):
            raise ValueError(f"`eos_fill` must be False, True (fill after the first settled EOS) or \"block\" (fill "
                             f"when a finished block holds an EOS, LocalLeap's stop), got {self.eos_fill!r}; "
                             "e.g. eos_fill=True")
        validation.integer("seed", self.seed, low=0, none="no seed", fix="e.g. seed=0")

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _divisor_hint(n: int) -> int:
    return next(d for d in (32, 16, 8, 4, 2, 1) if n % d == 0)


def fit_lengths(model: ModelLengths, prompt_length: int, given: dict, rule_block: int | None,
                variable_blocks: bool) -> dict[str, int]:
    """`gen_length` / `block_length` for `model` when the user left them unset; explicit values that the
    model cannot serve raise `ValueError` naming both.

    Rule: gen_length = min(the checkpoint's own generation length (its generation_config.json
    `max_new_tokens`; 128 without one), context - longest prompt), rounded down to a multiple of the block
    length when it holds at least one block (one block otherwise). The block length is the model's block size
    for block-diffusion models (SDAR), else the rule's default (`rule_block`; None = one block).
    """
    context, size = model.max_length, model.block_size
    room = None if context is None else context - prompt_length
    if room is not None and room < 1:
        raise ValueError(f"the prompt ({prompt_length} tokens) must leave room in {model.name}'s context ({context} "
                         "tokens) for at least one generated token; shorten the prompt")
    block = given.get("block_length")
    if size is not None:
        if variable_blocks:
            raise ValueError(f"`blocks='adaptive'` needs a model without a fixed block size, but {model.name} is a "
                             f"block-diffusion model (block size {size}); use a fixed-block sampler, e.g. 'threshold'")
        if block is not None and block != size:
            raise ValueError(f"`block_length` must equal {model.name}'s block size ({size}) on a block-diffusion "
                             f"model, got {block}; remove `block_length` or set it to {size}")
        block = size
    elif block is None and not variable_blocks:
        block = rule_block
    gen = given.get("gen_length")
    fitted: dict[str, int] = {}
    if gen is None:
        gen = model.gen_length or DEFAULT_GEN_LENGTH
        gen = gen if room is None else min(gen, room)
        if block is not None and gen >= block:
            gen -= gen % block
        elif size is not None:
            raise ValueError(f"the prompt ({prompt_length} tokens) leaves {room} positions in {model.name}'s context "
                             f"({context}), less than one block ({size}); shorten the prompt")
        fitted["gen_length"] = gen
    elif room is not None and gen > room:
        raise ValueError(f"prompt length {prompt_length} + `gen_length` {gen} must be <= {model.name}'s context "
                         f"{context}; shorten the prompt, lower `gen_length` or leave it unset to fit the context")
    if size is not None and gen % size:
        raise ValueError(f"`gen_length` must be a multiple of {model.name}'s block size ({size}), got {gen}; e.g. "
                         f"gen_length={gen - gen % size or size}")
    if "block_length" not in given and not variable_blocks:
        fitted["block_length"] = block if block is not None and block <= gen and gen % block == 0 else gen
    return fitted

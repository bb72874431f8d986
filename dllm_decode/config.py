"""DecodeConfig: the options every sampler shares, validated once at construction.

Rule-specific options (threshold, factor, ...) live on the rule's own frozen dataclass. Option names
follow the reference code: gen_length, block_length, steps, temperature, cfg_scale, remasking.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class DecodeConfig:
    gen_length: int = 128
    block_length: int | None = None  # None: the rule's default (32, or one block for Dream's rules)
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
    loop: str = "denoise"  # how forwards are spent (see loop.LOOPS)
    seed: int | None = None
    chat_template: bool | None = None  # None: apply the tokenizer's chat template when it has one
    trace: bool = False

    def __post_init__(self) -> None:
        _check_int("gen_length", self.gen_length, 1)
        if self.block_length is not None:
            _check_int("block_length", self.block_length, 1)
            if self.block_length > self.gen_length or self.gen_length % self.block_length:
                raise ValueError(f"`block_length` must divide `gen_length` ({self.gen_length}), got "
                                 f"{self.block_length}; e.g. block_length={_divisor_hint(self.gen_length)}")
        if self.steps is not None:
            _check_int("steps", self.steps, 1)
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ValueError(f"`temperature` must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.cfg_scale, (int, float)) or self.cfg_scale < 0:
            raise ValueError(f"`cfg_scale` must be a number >= 0 (0 = no guidance), got {self.cfg_scale!r}")
        if not (isinstance(self.eos_fill, bool) or self.eos_fill == "block"):
            raise ValueError(f"`eos_fill` must be False, True (fill after the first settled EOS) or \"block\" (fill "
                             f"when a finished block holds an EOS, LocalLeap's stop), got {self.eos_fill!r}")
        if self.seed is not None:
            _check_int("seed", self.seed, 0)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")


def _divisor_hint(n: int) -> int:
    return next(d for d in (32, 16, 8, 4, 2, 1) if n % d == 0)

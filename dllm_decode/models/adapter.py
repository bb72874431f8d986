"""The model adapter every policy talks to: one forward signature plus the facts decoding needs.

Decoding never touches a checkpoint's own API. The adapter knows the mask id, the end-of-text ids,
whether logits are shifted (Dream/SDAR predict position i from hidden state i-1) and the chat template,
and turns "logits for canvas positions P" into "run the LM head on hidden rows P - shift".
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .layers import shift_logits
from .packed import pack_linears


@dataclass
class DiffusionLM:
    """A masked-diffusion LM ready for decoding. Build with `load_model` or `wrap`."""

    module: nn.Module
    mask_id: int
    eos_ids: tuple[int, ...]
    shift: int = 0
    tokenizer: Any = None
    max_length: int | None = None
    pad_id: int | None = None
    native: bool = False  # True: the module takes positions / cache / logits_for / attention itself
    autoregressive: ClassVar[bool] = False  # a causal LM (`CausalLM`), a verification target rather than a denoiser
    name: str = "model"
    accepts: frozenset[str] = field(default_factory=frozenset)  # optional kwargs a wrapped module takes
    block_size: int | None = None  # a block-diffusion model's attention block (SDAR: 4); None for other models
    gen_length: int | None = None  # the checkpoint's own generation length (generation_config `max_new_tokens`)

    def __post_init__(self) -> None:
        if self.shift not in (0, 1):
            raise ValueError(f"`shift` must be 0 (LLaDA-style) or 1 (Dream-style), got {self.shift}")
        if not self.eos_ids:
            raise ValueError("`eos_ids` must name at least one end-of-text token id, got an empty tuple")
        if self.pad_id is None:
            self.pad_id = self.eos_ids[0]

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def supports_cache(self) -> bool:
        return self.native

    def logit_rows(self, cols: Tensor) -> Tensor:
        """Hidden rows whose head output predicts canvas columns `cols` (row 0 predicts itself, as in Dream)."""
        return (cols - self.shift).clamp_min(0) if self.shift else cols

    @torch.no_grad()
    def forward(self, input_ids: Tensor, *, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache=None, logits_for: Tensor | None = None, attention=None) -> Tensor:
        """input_ids [B, L] -> logits [B, n, V] for query rows `logits_for` [B, n] (all L if None).

        `logits_for` names the positions whose token distribution is wanted; the shift is applied here.
        The mask token's logit is -inf: committing [MASK] would leave a position masked forever.
        """
        if self.native:
            rows = None if logits_for is None else self.logit_rows(logits_for)
            logits = self.module(input_ids, positions=positions, attention_mask=attention_mask, cache=cache,
                                 logits_for=rows, attention=attention).logits
            if rows is None and self.shift:
                logits = shift_logits(logits)
        else:
            logits = self._forward_wrapped(input_ids, positions, attention_mask, cache, logits_for, attention)
        if self.mask_id < logits.shape[-1]:  # finite, so CFG's difference of two such logits stays finite
            logits[..., self.mask_id] = torch.finfo(logits.dtype).min  # in place on this forward's own output
        return logits

    __call__ = forward

    def begin_request(self) -> None:
        """Called by `Sampler.generate` before decoding: a module with per-request counters resets them."""
        if hasattr(self.module, "begin_request"):
            self.module.begin_request()

    def stats(self) -> dict[str, Any]:
        """The module's per-request accounting (e.g. the oracle's fallbacks) for `GenerationResult.loop_stats`;
        empty for networks."""
        return self.module.request_stats() if hasattr(self.module, "request_stats") else {}

    def _forward_wrapped(self, input_ids, positions, attention_mask, cache, logits_for, attention) -> Tensor:
        if cache is not None or attention is not None:
            raise ValueError(f"a wrapped module ({type(self.module).__name__}) cannot use a KV cache or an attention "
                             "backend; use `cache=\"none\"`, `attention=\"dense\"`, or load the model with `load_model`")
        kwargs: dict[str, Tensor] = {}
        if attention_mask is not None:
            if "attention_mask" not in self.accepts:
                raise ValueError(f"{type(self.module).__name__}.forward takes no `attention_mask`, so prompts of "
                                 "different lengths cannot be batched; generate them one at a time")
            kwargs["attention_mask"] = attention_mask
        if positions is not None and "position_ids" in self.accepts:
            kwargs["position_ids"] = positions
        out = self.module(input_ids, **kwargs)
        logits = out.logits if hasattr(out, "logits") else out
        if self.shift:
            logits = shift_logits(logits)
        if logits_for is not None:
            logits = logits.gather(1, logits_for[..., None].expand(-1, -1, logits.shape[-1]))
        return logits


def checkpoint_gen_length(path: Path) -> int | None:
    """`max_new_tokens` of a checkpoint's `generation_config.json` (transformers' convention), if any: the
    zoo models were trained on a 32-token canvas and answer garbage on a longer one."""
    file = path / "generation_config.json"
    value = json.loads(file.read_text()).get("max_new_tokens") if file.is_file() else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def wrap(module: nn.Module, *, mask_id: int, eos_ids: tuple[int, ...] | list[int] | int, shift: int = 0,
         tokenizer: Any = None, max_length: int | None = None, pad_id: int | None = None,
         pack: bool = True) -> DiffusionLM:
    """Adapt any module whose `module(input_ids).logits` behaves like LLaDA's (or Dream's, with `shift=1`).

    `pack`: our own architectures' linear layers switch to `PackedLinear` in place (oneDNN pre-packed
    weights for no-grad CPU fp32 forwards; training and other devices are unaffected)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"`module` must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(mask_id, int) or mask_id < 0:
        raise ValueError(f"`mask_id` must be a non-negative int, got {mask_id!r}")
    eos = (eos_ids,) if isinstance(eos_ids, int) else tuple(int(e) for e in eos_ids)
    if isinstance(module, DiffusionLM):
        raise ValueError("`module` is already a DiffusionLM; pass it to `Sampler.generate` directly")
    from .registry import native_facts

    facts = native_facts(module)
    if facts is not None:  # our own architectures: keep the fast path
        if pack:
            pack_linears(module)
        return DiffusionLM(module, mask_id, eos, facts["shift"], tokenizer, max_length or facts["max_length"],
                           pad_id, native=True, name=type(module).__name__,
                           block_size=getattr(module.config, "block_size", None))
    params = inspect.signature(module.forward).parameters
    accepts = frozenset(p for p in ("attention_mask", "position_ids") if p in params)
    return DiffusionLM(module.eval(), mask_id, eos, shift, tokenizer, max_length, pad_id, native=False,
                       name=type(module).__name__, accepts=accepts)

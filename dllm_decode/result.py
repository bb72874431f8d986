"""GenerationResult: decoded tokens plus the accounting defined once for the whole library.

NFE counts forwards of the main model (a CFG or verification batch counts one). `gen_tokens` counts
generated tokens before the first EOS/EoT. Tokens per forward = gen_tokens / forwards the row took
part in; ParallelBench's tokens per step = canvas length / those forwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .models.adapter import DiffusionLM
from .samplers.early import first_eos
from .state import DecodeState


@dataclass
class Trace:
    commit_step: Tensor  # [B, G] long: step at which each position was committed
    history: list[Tensor] | None  # canvas [B, G] after each step


@dataclass
class GenerationResult:
    canvas: Tensor  # [B, G] long: the decoded canvas, EOS and padding included
    ids: list[list[int]]  # per row, generated tokens before the first EOS/EoT
    text: list[str] | None  # per row, decoded `ids` (None without a tokenizer)
    nfe: int  # forwards of the main model for the whole batch
    steps: int  # denoising steps taken
    row_nfe: list[int]  # per row, forwards while it was still decoding
    gen_tokens: list[int]
    wall_time: float  # seconds around decoding, synchronised
    config: dict[str, Any] = field(default_factory=dict)
    trace: Trace | None = None
    cache_bytes: int = 0
    loop_stats: dict[str, Any] = field(default_factory=dict)  # e.g. drafter/target forwards, mean accepted length

    @property
    def tokens_per_forward(self) -> float:
        return sum(self.gen_tokens) / max(sum(self.row_nfe), 1)

    @property
    def tokens_per_step(self) -> float:
        """ParallelBench TPS: canvas length / NFE, averaged over rows."""
        G = self.canvas.shape[1]
        return sum(G / max(n, 1) for n in self.row_nfe) / len(self.row_nfe)

    @property
    def tokens_per_second(self) -> float:
        return sum(self.gen_tokens) / self.wall_time if self.wall_time > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        return {"nfe": self.nfe, "steps": self.steps, "gen_tokens": sum(self.gen_tokens),
                "tokens_per_forward": round(self.tokens_per_forward, 3),
                "tokens_per_step": round(self.tokens_per_step, 3), "wall_time": round(self.wall_time, 4),
                "tokens_per_second": round(self.tokens_per_second, 2), **self.loop_stats}


def build_result(model: DiffusionLM, state: DecodeState, wall_time: float, config: dict[str, Any],
                 cache_bytes: int = 0, loop_stats: dict[str, Any] | None = None) -> GenerationResult:
    canvas = state.canvas.clone()
    eos_at = first_eos(canvas, torch.tensor(model.eos_ids, device=canvas.device))
    rows = canvas.cpu().tolist()
    ends = eos_at.cpu().tolist()
    ids = [row[:end] for row, end in zip(rows, ends)]
    text = None
    if model.tokenizer is not None:
        text = [model.tokenizer.decode(i, skip_special_tokens=True) for i in ids]
    trace = Trace(state.commit_step.clone(), state.history) if state.history is not None else None
    return GenerationResult(canvas, ids, text, state.nfe, state.step, state.row_nfe.cpu().tolist(), ends, wall_time,
                            config, trace, cache_bytes, loop_stats or {})

"""DecodeState: everything one request's decoding changes, as tensors the loop and policies share.

Layout: prompts are left-padded to a common width P so every row's canvas of G positions starts at
column P; `attention_mask` hides the padding and `positions` count from each row's first real token,
so a row's tokens do not depend on its neighbours. Block bounds are per row (rows finish blocks at
different steps under adaptive rules). Shapes: B batch, P padded prompt width, G canvas length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor


@dataclass
class DecodeState:
    x: Tensor  # [B, P + G] long: padded prompt followed by the canvas
    attention_mask: Tensor | None  # [B, P + G] bool, None when no row is padded
    positions: Tensor  # [B, P + G] long
    prompt_width: int  # P
    mask_id: int
    block_start: Tensor  # [B] long, canvas coordinates
    block_end: Tensor  # [B] long
    block_step: Tensor  # [B] long: forwards spent in the current block
    block_masks: Tensor  # [B] long: masks in the current block when it started
    done: Tensor  # [B] bool
    commit_step: Tensor  # [B, G] long: step at which each position was committed, -1 if never
    row_nfe: Tensor  # [B] long: forwards in which the row was still decoding
    step: int = 0
    nfe: int = 0
    history: list[Tensor] | None = None  # canvases after each step, when traced
    on_step: Callable[[Any], None] | None = None  # `generate(on_step=...)`: called with a StepEvent per step
    # Per-request state, one slot per axis; each axis owns the dataclass it keeps here (None: the axis keeps none).
    rule_state: Any = None  # e.g. `samplers.credit.CreditState`
    block_state: Any = None  # e.g. `samplers.adablock.Delimiters`
    cache_state: Any = None  # `cache.rows.KVState` (`cache.windowed.WindowState`) for the KV caches
    attention_state: Any = None  # the attention backend of the request, e.g. `kernels.sparse.SparseBackend`
    loop_state: Any = None  # a loop's accounting, e.g. `speculative.verifier.Acceptance`
    revision_state: Any = None  # a revising rule's `samplers.revision.RevisionState` (None when monotone)

    @property
    def gen_length(self) -> int:
        return self.x.shape[1] - self.prompt_width

    @property
    def canvas(self) -> Tensor:
        """[B, G] view of the generated region."""
        return self.x[:, self.prompt_width:]

    @property
    def is_mask(self) -> Tensor:
        return self.canvas == self.mask_id

    def in_block(self, cols: Tensor) -> Tensor:
        """[B, n] bool: which canvas columns lie inside each row's current block."""
        return (cols >= self.block_start[:, None]) & (cols < self.block_end[:, None])

    @property
    def block_mask(self) -> Tensor:
        """[B, G] bool: the current block of each row over the whole canvas."""
        return self.in_block(torch.arange(self.gen_length, device=self.x.device)[None, :])


def scatter_rows(values: Tensor, rows: Tensor | None, batch: int, dim: int = 0) -> Tensor:
    """`values` computed for batch rows `rows` (along `dim`) placed in zeros for the whole batch of `batch` rows.

    Finished rows are dropped from a forward, but the loop and its policies read results batch-aligned;
    `rows` None means the forward had every row, so `values` is returned as is.
    """
    if rows is None:
        return values
    shape = list(values.shape)
    shape[dim] = batch
    return values.new_zeros(shape).index_copy_(dim, rows, values)


def left_pad(prompts: list[Tensor], gen_length: int, pad_id: int, mask_id: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """(x [B, P + G], attention mask or None, positions) for prompts of different lengths."""
    lengths = torch.tensor([p.numel() for p in prompts], device=prompts[0].device)
    padded = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True, padding_value=pad_id, padding_side="left")
    B, width = padded.shape
    device = padded.device
    x = torch.cat([padded, torch.full((B, gen_length), mask_id, dtype=torch.long, device=device)], dim=1)
    cols = torch.arange(width + gen_length, device=device)
    keep = cols[None, :] >= (width - lengths)[:, None]  # [B, P + G]
    positions = (keep.long().cumsum(1) - 1).clamp_min(0)
    return x, (None if bool(keep.all()) else keep), positions


def new_state(prompts: list[Tensor], gen_length: int, first_block_end: int, pad_id: int, mask_id: int,
              trace: bool) -> DecodeState:
    x, mask, positions = left_pad(prompts, gen_length, pad_id, mask_id)
    B, device = len(prompts), x.device
    zeros = torch.zeros(B, dtype=torch.long, device=device)
    return DecodeState(
        x=x, attention_mask=mask, positions=positions, prompt_width=x.shape[1] - gen_length, mask_id=mask_id,
        block_start=zeros.clone(), block_end=torch.full_like(zeros, first_block_end), block_step=zeros.clone(),
        block_masks=zeros.clone(), done=torch.zeros(B, dtype=torch.bool, device=device),
        commit_step=torch.full((B, gen_length), -1, dtype=torch.long, device=device), row_nfe=zeros.clone(),
        history=[] if trace else None,
    )

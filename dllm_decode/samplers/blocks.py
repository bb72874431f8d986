"""Block schedules: where each row's current block ends.

`fixed` is LLaDA's semi-autoregressive split of the canvas into equal blocks (one block over the
whole canvas is the special case `block_length = gen_length`). A schedule may look at the logits of
the block's first forward (AdaBlock does), so `start` runs after that forward and before the commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from ..components import Component, ModelFacts, Registry
from ..state import DecodeState


class BlockSchedule(Component):
    variable: ClassVar[bool] = False  # True: block lengths are unknown in advance (no per-block step budget)

    def new_request(self, model: "ModelFacts", state: DecodeState) -> None:
        """Per-request set-up before the first forward (kept in `state.block_state`); never calls the network."""

    def window(self, gen_length: int) -> int:
        """Widest window of canvas columns (from the block start) whose logits a block start needs."""
        raise NotImplementedError

    def first_end(self, gen_length: int) -> int:
        raise NotImplementedError

    def num_blocks(self, gen_length: int) -> int | None:
        return None

    def start(self, state: DecodeState, starting: Tensor, logits: Tensor, x0: Tensor | None, cols: Tensor) -> None:
        """Set `state.block_end` for rows `starting` [B] bool (their first forward is `logits` [B, n, V])."""
        raise NotImplementedError

    def next_start(self, first_mask: Tensor) -> Tensor:
        """Where a row's next block starts, given its first still-masked canvas column [B]."""
        raise NotImplementedError


BLOCKS: Registry[type[BlockSchedule]] = Registry("blocks", BlockSchedule)  # `adaptive` in adablock.py


@BLOCKS.register
@dataclass(frozen=True)
class FixedBlocks(BlockSchedule):
    block_length: int
    name = "fixed"
    config_fields = ("block_length",)
    offers = frozenset({"fixed_grid"})

    def window(self, gen_length: int) -> int:
        return min(self.block_length, gen_length)

    def first_end(self, gen_length: int) -> int:
        return min(self.block_length, gen_length)

    def num_blocks(self, gen_length: int) -> int:
        return -(-gen_length // self.block_length)

    def start(self, state: DecodeState, starting: Tensor, logits: Tensor, x0: Tensor | None, cols: Tensor) -> None:
        end = (state.block_start + self.block_length).clamp(max=state.gen_length)
        state.block_end = end.where(starting, state.block_end)

    def next_start(self, first_mask: Tensor) -> Tensor:
        return first_mask - first_mask % self.block_length  # blocks stay on their fixed grid

"""Early-commit hooks: stop refining a row and fill what is left.

A hook may extend a step's decision before it is applied (Prophet and SchED fill every mask with
this step's prediction once the model is sure enough) and may edit the canvas after it is applied
(end-of-text fill). Hooks never call the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..components import Component
from ..state import DecodeState
from .base import Decision, StepInput


class EarlyCommit(Component):
    needs_full_canvas: ClassVar[bool] = False  # True: the step window must cover every canvas column

    def before_commit(self, state: DecodeState, step: StepInput, decision: Decision) -> Decision:
        return decision

    def after_commit(self, state: DecodeState, eos_ids: Tensor) -> Tensor | None:
        """Optionally fill canvas positions; returns the [B, G] bool mask of positions it filled."""
        return None


def first_eos(canvas: Tensor, eos_ids: Tensor) -> Tensor:
    """Index of the first EOS/EoT per row [B]; G where the row has none."""
    is_eos = torch.isin(canvas, eos_ids)
    G = canvas.shape[1]
    return torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(is_eos[:, 0], G, dtype=torch.long))


@dataclass(frozen=True)
class EndOfTextFill(EarlyCommit):
    """EoTP: once a row has committed an EOS with every earlier position filled, the rest is EOS."""

    name = "eos_fill"

    def after_commit(self, state: DecodeState, eos_ids: Tensor) -> Tensor | None:
        canvas, is_mask = state.canvas, state.is_mask
        eos_at = first_eos(canvas, eos_ids)
        cols = torch.arange(canvas.shape[1], device=canvas.device)
        before = cols[None, :] < eos_at[:, None]
        settled = ~(is_mask & before).any(1) & (eos_at < canvas.shape[1])  # [B]
        fill = is_mask & ~before & settled[:, None]
        canvas.masked_fill_(fill, int(eos_ids[0]))  # in place: `canvas` is a view of state.x
        return fill


EARLY_COMMITS: dict[str, type[EarlyCommit]] = {}  # Prophet / SchED register here; `eos_fill` is a switch

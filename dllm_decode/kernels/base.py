"""The attention-backend axis: how a layer turns q, k, v into its output.

An `AttentionStrategy` is the user-facing choice (a frozen dataclass of options); per request it makes
a backend, a callable `(q [B,H,L,D], k [B,G,S,D], v, mask, layer) -> [B,H,L,D]` that the model's
layers call, told at each step which step it is (sparse patterns are chosen once, then reused).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..components import Component, PlanView, Registry
from ..state import DecodeState


class AttentionStrategy(Component):
    def new_request(self, state: DecodeState, plan: "PlanView") -> Any:
        """A backend for one request, or None for the model's default dense attention."""
        return None

    def begin_step(self, backend: Any, state: DecodeState) -> None:
        """Called before every forward of the request."""


ATTENTION: Registry[type[AttentionStrategy]] = Registry("attention", AttentionStrategy)  # `sparse` in sparse.py


@ATTENTION.register
@dataclass(frozen=True)
class DenseAttention(AttentionStrategy):
    """PyTorch SDPA over every key (the models' default)."""

    name = "dense"
    offers = frozenset({"any_mask"})


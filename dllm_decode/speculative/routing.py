"""S2D2 routing policies: per row and step, is an extra verification forward worth its cost?

Every policy sees the span length m (leftmost contiguous masks of the block) and the draft's per-token
acceptance proxies a_i = exp(-H_i / log V) (H_i the draft entropy at span position i). The expected
accepted length is E = sum_k prod_{i<=k} a_i; S2D2's default `score` verifies when E - cost >= 0.
`span`: verify when m >= min_span. `hysteresis`: a per-row switch with a running balance (realised
accepted - cost while on, expected score while off), switched on above `hysteresis_on` (1) and off below
`hysteresis_off` (-5); the balance restarts at each switch (our reading of the paper's on > 1, off < -5).
`ucb`: UCB1 over the arms {skip, verify} per row, reward = tokens committed per forward spent that step.
Each route is a small class behind `Route`; the stateful ones keep a dataclass of [B] / [B, 2] tensors
made per request. Nothing loops over rows. Shapes: B batch, W block length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor


def expected_accepted(probs: Tensor, span: Tensor) -> Tensor:
    """E [B] = sum_k prod_{i<=k} a_i over span positions; probs [B, W, V] draft, span [B, W] bool (span-aligned)."""
    V = probs.shape[-1]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # [B, W]
    a = torch.exp(-entropy / math.log(V)).masked_fill(~span, 0.0)
    return a.cumprod(-1).sum(-1)


@dataclass(frozen=True)
class Outcome:
    """What a step did, per row [B]: took part (still decoding), verified, drafts accepted, tokens committed."""

    rows: Tensor
    verified: Tensor
    expected: Tensor
    accepted: Tensor
    committed: Tensor


@dataclass(frozen=True)
class Route:
    """A routing policy; its fields are S2D2 options of the same names. Rows with an empty span never verify."""

    name: ClassVar[str] = ""

    @classmethod
    def from_options(cls, options: Any) -> "Route":
        """The route configured from an object carrying its fields (the `S2D2` loop)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    def new_request(self, batch: int, device: torch.device) -> Any:
        """Per-request routing state (None for stateless routes)."""
        return None

    def choose(self, state: Any, span_len: Tensor, expected: Tensor) -> Tensor:
        """[B] bool: rows that would verify this step, before the empty-span rule."""
        raise NotImplementedError

    def verifying(self, state: Any, span_len: Tensor, expected: Tensor) -> Tensor:
        return (span_len > 0) & self.choose(state, span_len, expected)

    def update(self, state: Any, outcome: Outcome) -> Any:
        """The state after a step."""
        return state


@dataclass(frozen=True)
class Always(Route):
    name: ClassVar[str] = "always"

    def choose(self, state: None, span_len: Tensor, expected: Tensor) -> Tensor:
        return torch.ones_like(span_len, dtype=torch.bool)


@dataclass(frozen=True)
class Never(Route):
    name: ClassVar[str] = "never"

    def choose(self, state: None, span_len: Tensor, expected: Tensor) -> Tensor:
        return torch.zeros_like(span_len, dtype=torch.bool)


@dataclass(frozen=True)
class Span(Route):
    min_span: int = 2
    name: ClassVar[str] = "span"

    def choose(self, state: None, span_len: Tensor, expected: Tensor) -> Tensor:
        return span_len >= self.min_span


@dataclass(frozen=True)
class Score(Route):
    route_cost: float = 1.0
    name: ClassVar[str] = "score"

    def choose(self, state: None, span_len: Tensor, expected: Tensor) -> Tensor:
        return expected - self.route_cost >= 0


@dataclass
class Switch:
    """Hysteresis state: whether each row verifies [B] bool, and its running balance [B] since the last switch."""

    on: Tensor
    balance: Tensor


@dataclass(frozen=True)
class Hysteresis(Route):
    route_cost: float = 1.0
    hysteresis_on: float = 1.0
    hysteresis_off: float = -5.0
    name: ClassVar[str] = "hysteresis"

    def new_request(self, batch: int, device: torch.device) -> Switch:
        return Switch(torch.ones(batch, dtype=torch.bool, device=device), torch.zeros(batch, device=device))

    def choose(self, state: Switch, span_len: Tensor, expected: Tensor) -> Tensor:
        return state.on

    def update(self, state: Switch, outcome: Outcome) -> Switch:
        gain = torch.where(outcome.verified, outcome.accepted.float() - self.route_cost,
                           outcome.expected - self.route_cost)
        balance = state.balance + gain.where(outcome.rows, torch.zeros_like(gain))
        switched = (~state.on & (balance > self.hysteresis_on)) | (state.on & (balance < self.hysteresis_off))
        return Switch(state.on ^ switched, balance.masked_fill(switched, 0.0))


@dataclass
class Arms:
    """UCB state per row over the arms (skip, verify): pulls [B, 2] and summed rewards [B, 2]."""

    count: Tensor
    reward: Tensor


@dataclass(frozen=True)
class UCB(Route):
    ucb_c: float = 1.0
    name: ClassVar[str] = "ucb"

    def new_request(self, batch: int, device: torch.device) -> Arms:
        return Arms(torch.zeros(batch, 2, device=device), torch.zeros(batch, 2, device=device))

    def choose(self, state: Arms, span_len: Tensor, expected: Tensor) -> Tensor:
        count, reward = state.count, state.reward  # arm 0 = skip, 1 = verify
        total = count.sum(-1, keepdim=True).clamp_min(1)
        bonus = self.ucb_c * torch.sqrt(2 * torch.log(total) / count.clamp_min(1))
        value = torch.where(count > 0, reward / count.clamp_min(1) + bonus, torch.full_like(count, float("inf")))
        return value[:, 1] > value[:, 0]

    def update(self, state: Arms, outcome: Outcome) -> Arms:
        arm = outcome.verified.long()[:, None]
        forwards = 1.0 + outcome.verified.float()  # a verifying row spent two forwards this step
        hit = torch.zeros_like(state.count).scatter_(1, arm, 1.0) * outcome.rows.float()[:, None]
        return Arms(state.count + hit, state.reward + hit * (outcome.committed.float() / forwards)[:, None])


ROUTE_CLASSES: dict[str, type[Route]] = {cls.name: cls for cls in (Always, Never, Span, Score, Hysteresis, UCB)}
ROUTES = tuple(ROUTE_CLASSES)  # the names, for the `route` option

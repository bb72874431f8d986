"""S2D2 routing policies: per row and step, is an extra verification forward worth its cost?

Every policy sees the span length m (leftmost contiguous masks of the block) and the draft's per-token
acceptance proxies a_i = exp(-H_i / log V) (H_i the draft entropy at span position i). The expected
accepted length is E = sum_k prod_{i<=k} a_i; S2D2's default `score` verifies when E - cost >= 0.
`span`: verify when m >= min_span. `hysteresis`: a per-row switch with a running balance (realised
accepted - cost while on, expected score while off), switched on above `hysteresis_on` (1) and off below
`hysteresis_off` (-5); the balance restarts at each switch (our reading of the paper's on > 1, off < -5).
`ucb`: UCB1 over the arms {skip, verify} per row, reward = tokens committed per forward spent that step.
State is a small dict of [B] / [B, 2] tensors; nothing loops over rows. Shapes: B batch, W block length.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

ROUTES = ("always", "never", "span", "score", "hysteresis", "ucb")


def expected_accepted(probs: Tensor, span: Tensor) -> Tensor:
    """E [B] = sum_k prod_{i<=k} a_i over span positions; probs [B, W, V] draft, span [B, W] bool (span-aligned)."""
    V = probs.shape[-1]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1)  # [B, W]
    a = torch.exp(-entropy / math.log(V)).masked_fill(~span, 0.0)
    return a.cumprod(-1).sum(-1)


def init_route_state(route: str, B: int, device: torch.device) -> dict[str, Tensor]:
    if route == "hysteresis":
        return {"on": torch.ones(B, dtype=torch.bool, device=device), "balance": torch.zeros(B, device=device)}
    if route == "ucb":
        return {"count": torch.zeros(B, 2, device=device), "reward": torch.zeros(B, 2, device=device)}
    return {}


def choose_rows(route: str, state: dict[str, Tensor], span_len: Tensor, expected: Tensor, *, min_span: int,
                cost: float, ucb_c: float) -> Tensor:
    """[B] bool: rows that verify this step (rows with an empty span never do)."""
    has_span = span_len > 0
    if route == "always":
        return has_span
    if route == "never":
        return torch.zeros_like(has_span)
    if route == "span":
        return has_span & (span_len >= min_span)
    if route == "score":
        return has_span & (expected - cost >= 0)
    if route == "hysteresis":
        return has_span & state["on"]
    count, reward = state["count"], state["reward"]  # ucb; arm 0 = skip, 1 = verify
    total = count.sum(-1, keepdim=True).clamp_min(1)
    bonus = ucb_c * torch.sqrt(2 * torch.log(total) / count.clamp_min(1))
    value = torch.where(count > 0, reward / count.clamp_min(1) + bonus, torch.full_like(count, float("inf")))
    return has_span & (value[:, 1] > value[:, 0])


def update_route_state(route: str, state: dict[str, Tensor], rows: Tensor, verified: Tensor, expected: Tensor,
                       accepted: Tensor, committed: Tensor, *, cost: float, on: float, off: float) -> dict[str, Tensor]:
    """After a step: rows [B] that took part, verified [B], accepted drafts [B], committed tokens [B]."""
    if route == "hysteresis":
        gain = torch.where(verified, accepted.float() - cost, expected - cost)
        balance = state["balance"] + gain.where(rows, torch.zeros_like(gain))
        turn_on = ~state["on"] & (balance > on)
        turn_off = state["on"] & (balance < off)
        switched = turn_on | turn_off
        return {"on": state["on"] ^ switched, "balance": balance.masked_fill(switched, 0.0)}
    if route == "ucb":
        arm = verified.long()[:, None]
        forwards = 1.0 + verified.float()
        hit = torch.zeros_like(state["count"]).scatter_(1, arm, 1.0) * rows.float()[:, None]
        return {"count": state["count"] + hit, "reward": state["reward"] + hit * (committed.float() / forwards)[:, None]}
    return state

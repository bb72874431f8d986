"""SchED: stop decoding once the full span's mean top-2 logit gap clears a smoothly falling threshold.

Rule: each step, average z1 - z2 (raw logits) over every generated position; the threshold falls from
`tau_high` to `tau_low` with progress p = (global step + 1) / total steps:
  linear       tau_high + (tau_low - tau_high) * p
  cosine       tau_low + (tau_high - tau_low) * (1 + cos(pi p)) / 2
  exponential  tau_low + (tau_high - tau_low) * exp(-k p)
When the gap reaches it, every remaining mask takes this step's x0 and the row stops (all-in commit).
Paper: SchED (schedule-based early decoding for diffusion LMs, 2025): 3.8-4.0x on instruction-tuned models
at 99.8-100% of the baseline score. Typical ranges: tau_high 7.5; tau_low 0 (aggressive) to 2.5
(conservative); k in {2, 4, 8, 16}. Total steps = the plan's step budget, or gen_length for rules without
one. Guarantee: thresholds above any reachable gap leave the base rule unchanged step for step;
tau_high = tau_low = 0 finishes every row after its first forward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import validation
from .early import EARLY_COMMITS, GapEarlyCommit

if TYPE_CHECKING:
    from ..components import PlanView
    from ..config import DecodeConfig

SCHEDULES = ("linear", "cosine", "exponential")


@EARLY_COMMITS.register
@dataclass(frozen=True)
class SchED(GapEarlyCommit):
    tau_high: float = 7.5
    tau_low: float = 2.5
    schedule: str = "linear"
    k: float = 4.0  # decay rate of the exponential schedule
    name = "sched"

    def __post_init__(self) -> None:
        for key in ("tau_low", "tau_high"):
            validation.number(key, getattr(self, key), low=0, fix="a top-2 logit gap in nats, typically 0 to 7.5")
        if self.tau_high < self.tau_low:
            raise ValueError(f"`tau_high` must be >= `tau_low` ({self.tau_low}), got {self.tau_high}; the threshold "
                             "falls from tau_high to tau_low")
        validation.choice("schedule", self.schedule, SCHEDULES)
        validation.number("k", self.k, low=0, low_open=True, fix="the exponential schedule's rate, e.g. 2 to 16")

    def check(self, plan: "PlanView", config: "DecodeConfig", given: frozenset[str]) -> None:
        if "k" in given and self.schedule != "exponential":
            raise ValueError(f"`k` only shapes `schedule='exponential'`, got schedule={self.schedule!r}; "
                             "remove `k` or use the exponential schedule")

    def threshold(self, progress: float) -> float:
        span = self.tau_high - self.tau_low
        if self.schedule == "linear":
            return self.tau_high - span * progress
        if self.schedule == "cosine":
            return self.tau_low + span * (1 + math.cos(math.pi * progress)) / 2
        return self.tau_low + span * math.exp(-self.k * progress)

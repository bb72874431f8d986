"""The commit-rule interface and the prologue every rule shares: logits -> token, confidence.

A commit rule sees the logits of a window of canvas positions and which of them are eligible (masked,
inside the current block); it returns which to commit and the token for every window position. Rules
are vectorised over the batch and never call the network. Shapes: B batch, n window, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..components import Component

NEG_INF = float("-inf")


@dataclass(frozen=True)
class TokenOptions:
    """How logits become tokens; shared by every rule (LLaDA's `generate` options)."""

    temperature: float = 0.0
    logits_eos_inf: bool = False  # forbid EOS/EoT tokens outright
    confidence_eos_eot_inf: bool = False  # never pick an EOS/EoT prediction while another exists


@dataclass
class StepInput:
    """What a rule may read at one step. `cols` are canvas columns of the window rows."""

    logits: Tensor  # [B, n, V] float
    eligible: Tensor  # [B, n] bool: masked and inside the row's current block
    cols: Tensor  # [B, n] long
    block_step: Tensor  # [B] long: steps already taken in the current block
    block_masks: Tensor  # [B] long: masks in the current block when it started
    steps_per_block: int | None  # step budget of a block, None for rules that loop to completion
    eos_ids: Tensor  # [E] long
    generator: torch.Generator | None
    tokens: TokenOptions
    rule_state: Any = None
    step: int = 0  # global step of the request (0-based), shared by every row
    total_steps: int | None = None  # the plan's step budget, or gen_length for rules without one


@dataclass
class Decision:
    commit: Tensor  # [B, n] bool, a subset of eligible
    tokens: Tensor  # [B, n] long: the prediction at every window row (x0), used by fills too
    rule_state: Any = None  # a rule's updated per-request state; the loop stores it back when not None


def forbid_eos(logits: Tensor, eos_ids: Tensor) -> Tensor:
    return logits.index_fill(-1, eos_ids, NEG_INF)


def sample_tokens(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """x0: argmax at T=0, else Gumbel-max in float64 (the log form of LLaDA's exp(z) / (-log u)^T)."""
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.double()
    u = torch.rand(z.shape, generator=generator, device=z.device, dtype=torch.float64).clamp_min(1e-300)
    return (z - temperature * torch.log(-torch.log(u))).argmax(-1)


def log_probs(logits: Tensor, temperature: float = 0.0) -> Tensor:
    """log softmax in fp32 (fp64 when sampling); `temperature` > 0 tempers first (Dream's convention)."""
    z = logits.double() if temperature > 0 else logits.float()
    return torch.log_softmax(z / temperature if temperature > 0 else z, dim=-1)


def choose(step: StepInput, tempered: bool = False) -> tuple[Tensor, Tensor]:
    """(x0 [B, n], log-probabilities [B, n, V]) after the EOS options.

    LLaDA scores x0 with softmax(z) (`tempered=False`); Dream with softmax(z / T) (`tempered=True`).
    """
    logits = step.logits
    if step.tokens.logits_eos_inf:
        logits = forbid_eos(logits, step.eos_ids)
    x0 = sample_tokens(logits, step.tokens.temperature, step.generator)
    return x0, log_probs(logits, step.tokens.temperature if tempered else 0.0)


def token_log_prob(logp: Tensor, x0: Tensor) -> Tensor:
    """log p(x0) [B, n] from log-probabilities [B, n, V] and tokens [B, n]."""
    return logp.gather(-1, x0[..., None]).squeeze(-1)


def confidence_of(logp: Tensor, x0: Tensor) -> Tensor:
    """p(x0) [B, n]: the confidence every confidence-ranked rule scores a prediction by."""
    return token_log_prob(logp, x0).exp()


def token_probability(logits: Tensor, tokens: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """p(tokens) [B, n] from a softmax in `dtype`: the revising rules compare it with thresholds in the precision
    of their authors' code (SGLang's editing: fp32; WINO: fp64)."""
    return torch.softmax(logits.to(dtype), dim=-1).gather(-1, tokens[..., None]).squeeze(-1)


def masked_confidence(confidence: Tensor, x0: Tensor, step: StepInput) -> Tensor:
    """-inf where a row may not commit; with `confidence_eos_eot_inf`, EOS predictions rank last."""
    if step.tokens.confidence_eos_eot_inf:
        confidence = confidence.masked_fill(torch.isin(x0, step.eos_ids), NEG_INF)
    return confidence.masked_fill(~step.eligible, NEG_INF)


def rank_key(score: Tensor, eligible: Tensor) -> Tensor:
    """Score with every eligible position above every ineligible one, even eligible ones scored -inf
    (e.g. EOS predictions under `confidence_eos_eot_inf`): those still rank, last among the eligible."""
    return torch.where(eligible, score.clamp_min(torch.finfo(score.dtype).min), NEG_INF)


def top_k_mask(score: Tensor, k: Tensor, eligible: Tensor) -> Tensor:
    """Per-row top-k of `score` [B, n] with per-row k [B], restricted to eligible rows; no Python loop."""
    order = rank_key(score, eligible).argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(score.shape[-1], device=score.device).expand_as(order))
    return (ranks < k[:, None]) & eligible


def at_least_argmax(commit: Tensor, score: Tensor, eligible: Tensor) -> Tensor:
    """Add each row's best eligible position so every row with a mask left commits at least one token."""
    best = torch.zeros_like(commit).scatter_(-1, rank_key(score, eligible).argmax(-1, keepdim=True), True)
    return (commit | best) & eligible


class CommitRule(Component):
    """Base class: a frozen dataclass of options plus `commit`. Subclasses set the class attributes."""

    uses_steps: ClassVar[bool] = True  # False: loops until the block is empty; `steps` is then rejected
    default_block_length: ClassVar[int | None] = 32  # None = one block over the whole canvas
    masked_only: ClassVar[bool] = True  # reads logits at eligible columns only (the loop may drop the others)

    def init_state(self, batch: int, gen_length: int, device: torch.device) -> Any:
        """Per-request state (credit, for instance) for `batch` rows of `gen_length` canvas columns;
        reset at block starts through `reset`, replaced by `Decision.rule_state` when a rule returns one."""
        return None

    def reset(self, rule_state: Any, rows: Tensor) -> Any:
        """Called when rows [B] bool start a new block."""
        return rule_state

    def commit(self, step: StepInput) -> Decision:  # pragma: no cover - interface
        raise NotImplementedError


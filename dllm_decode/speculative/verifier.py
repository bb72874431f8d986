"""The one speculative-sampling verifier every speculative loop shares.

Rule (Leviathan et al., 2023; Chen et al., 2023): drafts x_1..x_k were drawn from draft distributions
q_i; the verifier's distributions are p_i. Accept x_i with probability min(1, p_i(x_i) / q_i(x_i)), left
to right; at the first rejection draw a replacement from normalize((p_i - q_i)+) (p_i when that mass
is zero) and stop. When every draft is accepted and a (k+1)-th verifier row is given, draw a bonus
token from it. At temperature 0 (one-hot q and p) this is the longest exact-match prefix followed by
the verifier's own argmax. Used by DEER (q = dLLM drafter, p = AR target) and S2D2 (q = block-diffusion
draft, p = the same model in AR mode).
Guarantee: each emitted token is distributed exactly as the verifier's p given the accepted prefix.
Shapes: B batch, k drafts, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Verdict:
    accepted: Tensor  # [B] long: drafts accepted (0..limit)
    token: Tensor  # [B] long: the replacement (or bonus) token at index `accepted`
    has_token: Tensor  # [B] bool: False where `accepted` hit the limit and no verifier row exists there


def verify(drafts: Tensor, draft_probs: Tensor | None, target_probs: Tensor, *, temperature: float,
           limit: Tensor | None = None, generator: torch.Generator | None = None) -> Verdict:
    """Speculative verification of `drafts` [B, k].

    `draft_probs` [B, k, V] is q (None: the drafts were deterministic, q one-hot); `target_probs`
    [B, k or k+1, V] is p (rows past k give the bonus token). `limit` [B] caps how many drafts a row may
    accept (default k). At `temperature` 0 the probabilities only need the right argmax.
    """
    B, k = drafts.shape
    limit = torch.full((B,), k, dtype=torch.long, device=drafts.device) if limit is None else limit.clamp(0, k)
    n_rows = target_probs.shape[1]
    if n_rows not in (k, k + 1):
        raise ValueError(f"`target_probs` must have k ({k}) or k + 1 rows, got {n_rows}")
    index = torch.arange(k, device=drafts.device)
    in_range = index[None, :] < limit[:, None]
    p_draft = target_probs[:, :k].gather(-1, drafts[..., None]).squeeze(-1)  # p_i(x_i) [B, k]
    if temperature == 0:
        ok = drafts == target_probs[:, :k].argmax(-1)
    else:
        q_draft = torch.ones_like(p_draft) if draft_probs is None else \
            draft_probs.gather(-1, drafts[..., None]).squeeze(-1)
        u = torch.rand(p_draft.shape, generator=generator, device=drafts.device, dtype=p_draft.dtype)
        ok = u * q_draft < p_draft  # u < p/q without dividing by a zero q
    accepted = (ok & in_range).long().cumprod(-1).sum(-1)  # [B] length of the accepted prefix
    # Residual row at index `accepted`: (p - q)+ where a draft was rejected, p itself past the drafts.
    at = accepted.clamp(max=n_rows - 1)
    p_at = target_probs.gather(1, at[:, None, None].expand(-1, 1, target_probs.shape[-1])).squeeze(1)  # [B, V]
    has_token = accepted < n_rows
    rejected = accepted < limit  # a real rejection, not the end of the drafts
    if temperature == 0:
        return Verdict(accepted, p_at.argmax(-1), has_token)
    if draft_probs is None:
        q_at = torch.zeros_like(p_at).scatter_(-1, drafts.gather(1, accepted.clamp(max=k - 1)[:, None]), 1.0)
    else:
        q_at = draft_probs.gather(1, accepted.clamp(max=k - 1)[:, None, None].expand(-1, 1, p_at.shape[-1])).squeeze(1)
    residual = torch.where(rejected[:, None], (p_at - q_at).clamp_min(0), p_at)
    mass = residual.sum(-1, keepdim=True)
    residual = torch.where(mass > 0, residual, p_at)  # p == q exactly: the rejection had probability 0
    token = torch.multinomial(residual.float() if residual.dtype == torch.float16 else residual, 1,
                              generator=generator).squeeze(-1)
    return Verdict(accepted, token, has_token)


@dataclass
class Acceptance:
    """A speculative loop's per-request accounting (`state.loop_state`): accepted lengths, one [B] tensor per
    step (-1 where a row took no part), and the forwards of the second model or pass (drafter, AR verifier)."""

    chunks: list[Tensor] = field(default_factory=list)
    forwards: int = 0

    def record(self, accepted: Tensor, took_part: Tensor) -> None:
        self.chunks.append(accepted.where(took_part, torch.full_like(accepted, -1)))

    def mean(self) -> float:
        return mean_accepted(self.chunks)


def mean_accepted(chunks: list[Tensor]) -> float:
    """Mean accepted length over per-iteration [B] tensors in which -1 marks rows that did not take part."""
    if not chunks:
        return 0.0
    accepted = torch.stack(chunks).double()
    taken = accepted >= 0
    return float(accepted[taken].mean()) if bool(taken.any()) else 0.0


def probabilities(logits: Tensor, temperature: float) -> Tensor:
    """softmax(z / T) in float64 (T > 0) or float32 (T = 0: only the argmax is read)."""
    if temperature == 0:
        return torch.softmax(logits.float(), dim=-1)
    return torch.softmax(logits.double() / temperature, dim=-1)


def draw(probs: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """Tokens [...] from probabilities [..., V]: argmax at T = 0, a categorical draw otherwise."""
    if temperature == 0:
        return probs.argmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])

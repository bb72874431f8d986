"""`deer`: a dLLM drafter proposes k tokens in one denoising step, an AR target verifies them in one forward.

Rule (DEER): given the verified prefix, the drafter sees [prompt | prefix | k masks] (nothing after) and
fills the k masks in ONE step, each token drawn from its own marginal q_i (argmax at T = 0); the AR
target scores the k drafts plus one bonus position in one incremental forward over its KV cache; the
shared verifier accepts left to right with min(1, p/q) and resamples the first rejection from
normalize((p - q)+). A row stops at its first EOS (the rest of its canvas is EOS), as AR decoding does.
Paper: DEER, acceptance up to 32 tokens, 5.54x on HumanEval with Qwen3-30B-A3B (EAGLE-3: 2.41x).
Typical k: 4-32. Use: `Sampler("deer", drafter="tiny-deer-drafter").generate(load_model("tiny-ar"), prompt)`
(the drafter: a zoo name, a directory or a model; the target: any causal LM, a bare transformers one too;
CLI: `dllm-decode generate --model tiny-ar --sampler deer -o drafter=tiny-deer-drafter PROMPT`). Accounting: `nfe` counts TARGET forwards (the model passed to `generate`); drafter
forwards (always equal in number) and the mean accepted length are in `GenerationResult.loop_stats`.
Guarantee: lossless. At T = 0 the output equals the target's own greedy decoding token for token; at
T > 0 every token is distributed as the target's softmax(z / T) given the prefix.
Shapes: B batch, P padded prompt width, G canvas, k draft length, V vocabulary, S = P + G.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from .. import validation
from ..components import Need
from ..loop import record_step
from ..models.adapter import DiffusionLM
from ..models.causal import CausalLM
from ..plan import LOOPS, DecodePlan, Loop
from ..samplers.base import CommitRule, Decision, StepInput, choose
from ..state import DecodeState
from .verifier import draw, mean_accepted, probabilities, verify


@dataclass(frozen=True)
class DraftFill(CommitRule):
    """Fill every eligible mask in one step with its own prediction (the DEER drafter's one-step rule)."""

    name = "draft_fill"
    offers = frozenset({"one_step_fill"})
    uses_steps = False
    default_block_length = None

    def commit(self, step: StepInput) -> Decision:
        x0, _ = choose(step)
        return Decision(step.eligible.clone(), x0)


@LOOPS.register
@dataclass(frozen=True)
class DEER(Loop):
    """Draft `draft_length` tokens with a dLLM `drafter`, verify them with the AR target passed to `generate`."""

    drafter: Any = None  # a DiffusionLM, or a checkpoint directory / zoo name for `load_model`
    draft_length: int = 8
    name: ClassVar[str] = "deer"
    offers: ClassVar[frozenset[str]] = frozenset({"own_forwards"})
    needs: ClassVar[tuple[Need, ...]] = (
        Need("rule", "one_step_fill", "deer drafts by filling the draft window in one step",
             "use Sampler(\"deer\", drafter=...)"),
        Need("early_commit", "edits_canvas", "rows stop at their first EOS already", "remove `early_commit` and `eos_fill`",
             present=False),
        Need("cache", "full_sequence", "deer keeps the target's own KV cache", "leave `cache` at 'none'"),
        Need("attention", "any_mask", "deer keeps the target's own KV cache", "leave `attention` at 'dense'"),
        Need("model", "autoregressive", "the model passed to `generate` verifies the drafts",
             "pass a causal LM to `generate`; the diffusion model goes in `drafter`"),
    )

    def __post_init__(self) -> None:
        validation.integer("draft_length", self.draft_length, low=1, fix="tokens drafted per target forward, e.g. 8")
        if self.drafter is None:
            raise ValueError("`drafter` is required: Sampler(\"deer\", drafter=load_model(...) or a path, ...)")
        if isinstance(self.drafter, (str, Path)):
            from ..models.loading import load_model

            object.__setattr__(self, "drafter", load_model(self.drafter))  # resolved once, at construction
        if not isinstance(self.drafter, DiffusionLM) or isinstance(self.drafter, CausalLM):
            raise ValueError(f"`drafter` must be a diffusion LM (from `load_model` or `wrap`) or a path to one, got "
                             f"{type(self.drafter).__name__}")

    def options(self) -> dict[str, Any]:
        return {"drafter": self.drafter.name, "draft_length": self.draft_length}

    def check(self, plan: DecodePlan, config, given: frozenset[str]) -> None:
        if plan.cfg_scale:
            raise ValueError(f"`cfg_scale` must be 0 under `loop=\"deer\"` (the AR target has no unconditional "
                             f"branch), got {plan.cfg_scale}; remove `cfg_scale`")

    def run(self, target: DiffusionLM, state: DecodeState, plan: DecodePlan,
            generator: torch.Generator | None) -> None:
        self.fit(target, frozenset())
        if self.drafter.device != target.device:
            raise ValueError(f"`drafter` is on {self.drafter.device} but the target on {target.device}; move one")
        T, k = plan.tokens.temperature, self.draft_length
        B, S = state.x.shape
        P, G = state.prompt_width, state.gen_length
        device = state.x.device
        keep = state.attention_mask if state.attention_mask is not None else torch.ones_like(state.x, dtype=torch.bool)
        eos_ids = torch.tensor(target.eos_ids, device=device)
        eos_fill = target.eos_ids[0]  # the id written after a row's EOS, read on the host once per request
        cols = torch.arange(S, device=device)
        vocab = target.module.get_output_embeddings().weight.shape[0]
        length = torch.zeros(B, dtype=torch.long, device=device)  # verified canvas tokens per row
        past, cached = None, 0  # target KV cache and how many leading columns it holds (the same for every row)
        stats = {"drafter_nfe": 0, "target_nfe": 0, "accepted": []}
        state.extras["deer"] = stats
        while True:
            active = ~state.done
            if int(active.sum()) == 0:  # the iteration's one host sync
                break
            drafts, q = self._draft(state, keep, length, k, T, generator)
            stats["drafter_nfe"] += 1
            if q.shape[-1] != vocab:
                raise ValueError(f"drafter vocabulary ({q.shape[-1]}) differs from the target's ({vocab}); DEER needs "
                                 "a drafter trained on the target's tokenizer")
            fed = state.x.masked_fill(cols[None, :] >= P + length[:, None], target.pad_id)
            fed[:, P:] = torch.where((cols[None, P:] >= P + length[:, None]) & (cols[None, P:] < P + length[:, None] + k),
                                     self._spread(drafts, length, G), fed[:, P:])
            end = int((P + length + k).where(active, torch.zeros_like(length)).max().clamp(max=S))
            logits, past = target.step(fed[:, cached:end], positions=state.positions[:, cached:end],
                                       attention_mask=keep[:, :end], past=past)
            state.nfe += 1
            stats["target_nfe"] += 1
            state.row_nfe += active.long()
            rows = (P + length - 1 - cached)[:, None] + torch.arange(k + 1, device=device)  # logits row of draft i
            rows = rows.clamp(0, logits.shape[1] - 1)
            p = probabilities(logits.gather(1, rows[..., None].expand(-1, -1, logits.shape[-1])), T)  # [B, k+1, V]
            verdict = verify(drafts, q, p, temperature=T, limit=(G - length).clamp(0, k), generator=generator)
            stats["accepted"].append(verdict.accepted.where(active, torch.full_like(length, -1)))
            length = torch.where(active, self._commit(state, length, drafts, verdict, active, eos_ids, eos_fill),
                                 length)
            state.done = state.done | (length >= G)
            record_step(state)  # trace history and the on_step callback
            state.step += 1
            still = ~state.done
            if bool(still.any()):
                cached = int((P + length - 1).where(still, torch.full_like(length, S)).min())  # re-feed the last token
                target.truncate(past, cached)

    def stats(self, state: DecodeState) -> dict[str, Any]:
        stats = state.extras.get("deer", {"drafter_nfe": 0, "target_nfe": 0, "accepted": []})
        return {"drafter_nfe": stats["drafter_nfe"], "target_nfe": stats["target_nfe"],
                "mean_accepted": mean_accepted(stats["accepted"])}

    def _draft(self, state: DecodeState, keep: Tensor, length: Tensor, k: int, T: float,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """One drafter forward over [prompt | prefix | k masks]: drafts [B, k] and their q [B, k, V]."""
        drafter, P, G = self.drafter, state.prompt_width, state.gen_length
        cols = torch.arange(state.x.shape[1], device=state.x.device)
        canvas_cols = cols[None, P:] - P
        x = state.x.clone()
        x[:, P:] = state.canvas.masked_fill(canvas_cols >= length[:, None], drafter.mask_id)
        visible = keep & (cols[None, :] < P + length[:, None] + k)  # the drafter sees nothing after the k masks
        targets = (P + length[:, None] + torch.arange(k, device=x.device)).clamp(max=P + G - 1)
        logits = drafter(x, positions=state.positions, attention_mask=visible, logits_for=targets)
        q = probabilities(logits, T)
        return draw(q, T, generator), q

    @staticmethod
    def _spread(drafts: Tensor, length: Tensor, G: int) -> Tensor:
        """[B, G] canvas with each row's drafts placed at columns length..length+k-1 (other columns arbitrary)."""
        k = drafts.shape[1]
        idx = (torch.arange(G, device=drafts.device)[None, :] - length[:, None]).clamp(0, k - 1)
        return drafts.gather(1, idx)

    @staticmethod
    def _commit(state: DecodeState, length: Tensor, drafts: Tensor, verdict, active: Tensor, eos_ids: Tensor,
                eos_fill: int) -> Tensor:
        """Write accepted drafts plus the verifier's token; stop rows at EOS. Returns the new verified length [B]."""
        B, k = drafts.shape
        G = state.gen_length
        n_new = verdict.accepted + (verdict.has_token & (length + verdict.accepted < G)).long()  # [B]
        seg = torch.cat([drafts, drafts[:, :1]], 1).scatter(1, verdict.accepted[:, None], verdict.token[:, None])  # [B, k+1]
        offs = torch.arange(k + 1, device=drafts.device)
        write = (offs[None, :] < n_new[:, None]) & active[:, None]
        is_eos = torch.isin(seg, eos_ids) & write
        first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(n_new, k + 1))
        where = length[:, None] + offs  # may run past the canvas: write into a padded copy, then keep G columns
        pad = torch.full((B, k + 1), -1, dtype=torch.long, device=drafts.device)
        canvas = torch.cat([state.canvas, pad], 1)
        canvas.scatter_(1, where, torch.where(write, seg, canvas.gather(1, where)))
        stamps = torch.cat([state.commit_step, pad], 1)
        stamps.scatter_(1, where, torch.where(write, torch.full_like(where, state.step), stamps.gather(1, where)))
        state.canvas.copy_(canvas[:, :G])  # in place: `canvas` is a view of state.x
        state.commit_step.copy_(stamps[:, :G])
        canvas = state.canvas
        stopped = active & (first_eos <= k)
        after = torch.arange(G, device=drafts.device)[None, :] > (length + first_eos)[:, None]
        fill = stopped[:, None] & after
        canvas.masked_fill_(fill, eos_fill)  # AR decoding ends at EOS: the rest of the row is EOS
        state.commit_step.masked_fill_(fill & (state.commit_step < 0), state.step)
        state.done = state.done | stopped
        return torch.where(stopped, torch.full_like(n_new, G), length + n_new)

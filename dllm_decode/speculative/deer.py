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
from ..driver import Driver, LoopStep, Rows, StepLoop, count_forward
from ..loop import commit
from ..models.adapter import DiffusionLM
from ..models.causal import CausalLM
from ..plan import LOOPS, DecodePlan
from ..samplers.base import CommitRule, Decision, StepInput, choose
from ..samplers.revision import WITHOUT_REVISION_HOOK
from ..state import DecodeState
from .verifier import Acceptance, Verdict, draw, probabilities, verify


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
class DEER(StepLoop):
    """Draft `draft_length` tokens with a dLLM `drafter`, verify them with the AR target passed to `generate`."""

    drafter: Any = None  # a DiffusionLM, or a checkpoint directory / zoo name for `load_model`
    draft_length: int = 8
    name: ClassVar[str] = "deer"
    offers: ClassVar[frozenset[str]] = frozenset({"own_forwards"})
    needs: ClassVar[tuple[Need, ...]] = (
        WITHOUT_REVISION_HOOK,
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

    def begin(self, driver: Driver) -> "DraftStep":
        target = driver.model
        self.fit(target, frozenset())
        if self.drafter.device != target.device:
            raise ValueError(f"`drafter` is on {self.drafter.device} but the target on {target.device}; move one")
        return DraftStep(self, driver)

    def stats(self, state: DecodeState) -> dict[str, Any]:
        acceptance = state.loop_state if isinstance(state.loop_state, Acceptance) else Acceptance()
        target_nfe = state.nfe if isinstance(state.loop_state, Acceptance) else 0  # `nfe` counts target forwards
        return {"drafter_nfe": acceptance.forwards, "target_nfe": target_nfe, "mean_accepted": acceptance.mean()}

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


class DraftStep(LoopStep):
    """One DEER step: the drafter's k drafts, one incremental target forward over them, verification, the commit.
    Progress is each row's verified length, not blocks; the driver's one sync also reads the target forward's
    end column and where the target's KV cache is cut."""

    moves_blocks: ClassVar[bool] = False

    def __init__(self, loop: DEER, driver: Driver) -> None:
        state, target = driver.state, driver.model
        self.loop, self.driver = loop, driver
        B, S = state.x.shape
        device = state.x.device
        self.keep = state.attention_mask if state.attention_mask is not None else \
            torch.ones_like(state.x, dtype=torch.bool)
        self.eos_fill = target.eos_ids[0]  # the id written after a row's EOS, read on the host once per request
        self.vocab = target.module.get_output_embeddings().weight.shape[0]
        self.length = torch.zeros(B, dtype=torch.long, device=device)  # verified canvas tokens per row
        self.past: Any = None  # the target's KV cache; it holds the leading `cached` columns of every row
        state.loop_state = self.acceptance = Acceptance()

    def counts(self, active: Tensor) -> list[Tensor]:
        state, k = self.driver.state, self.loop.draft_length
        P, S = state.prompt_width, state.x.shape[1]
        end = (P + self.length + k).where(active, torch.zeros_like(self.length)).max().clamp(max=S)
        cut = (P + self.length - 1).where(active, torch.full_like(self.length, S)).min()  # re-feed the last token
        return [end, cut]

    def advance(self, rows: Rows, counts: list[int]) -> None:
        d, loop, active = self.driver, self.loop, rows.mask
        state, target, generator = d.state, d.model, d.generator
        T, k = d.plan.tokens.temperature, loop.draft_length
        P, G, S = state.prompt_width, state.gen_length, state.x.shape[1]
        end, cached = counts[0], 0
        if self.past is not None:
            cached = counts[1]
            target.truncate(self.past, cached)
        length, cols = self.length, torch.arange(S, device=state.x.device)
        drafts, q = loop._draft(state, self.keep, length, k, T, generator)
        self.acceptance.forwards += 1
        if q.shape[-1] != self.vocab:
            raise ValueError(f"drafter vocabulary ({q.shape[-1]}) differs from the target's ({self.vocab}); DEER "
                             "needs a drafter trained on the target's tokenizer")
        fed = state.x.masked_fill(cols[None, :] >= P + length[:, None], target.pad_id)
        fed[:, P:] = torch.where((cols[None, P:] >= P + length[:, None]) & (cols[None, P:] < P + length[:, None] + k),
                                 loop._spread(drafts, length, G), fed[:, P:])
        logits, self.past = target.step(fed[:, cached:end], positions=state.positions[:, cached:end],
                                        attention_mask=self.keep[:, :end], past=self.past)
        count_forward(state, active)
        at = (P + length - 1 - cached)[:, None] + torch.arange(k + 1, device=state.x.device)  # logits row of draft i
        at = at.clamp(0, logits.shape[1] - 1)
        p = probabilities(logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1])), T)  # [B, k+1, V]
        verdict = verify(drafts, q, p, temperature=T, limit=(G - length).clamp(0, k), generator=generator)
        self.acceptance.record(verdict.accepted, active)
        self.length = torch.where(active, self.write(drafts, verdict, active), length)
        state.done = state.done | (self.length >= G)

    def write(self, drafts: Tensor, verdict: Verdict, active: Tensor) -> Tensor:
        """Commit accepted drafts plus the verifier's token; stop rows at EOS. Returns the new verified length [B]."""
        state, length = self.driver.state, self.length
        k, G = drafts.shape[1], state.gen_length
        n_new = verdict.accepted + (verdict.has_token & (length + verdict.accepted < G)).long()  # [B], <= G - length
        seg = torch.cat([drafts, drafts[:, :1]], 1).scatter(1, verdict.accepted[:, None], verdict.token[:, None])
        offs = torch.arange(k + 1, device=drafts.device)
        write = (offs[None, :] < n_new[:, None]) & active[:, None]  # [B, k+1]
        is_eos = torch.isin(seg, self.driver.eos_ids) & write
        first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full_like(n_new, k + 1))
        where = length[:, None] + offs  # columns past the canvas are never written (n_new <= G - length)
        commit(state, Decision(write, seg), where.clamp(max=G - 1), where < G)
        stopped = active & (first_eos <= k)
        after = torch.arange(G, device=drafts.device)[None, :] > (length + first_eos)[:, None]
        fill = stopped[:, None] & after
        state.canvas.masked_fill_(fill, self.eos_fill)  # AR decoding ends at EOS: the rest of the row is EOS
        state.commit_step.masked_fill_(fill & (state.commit_step < 0), state.step)
        state.done = state.done | stopped
        return torch.where(stopped, torch.full_like(n_new, G), length + n_new)

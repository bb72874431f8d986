"""`ssd`: lossless self-speculative decoding for LLaDA / Dream (SSD; FreeDave is the public-code form).

Rule: the reference trajectory is one-token-per-step greedy `confidence` decoding in semi-AR blocks.
From one forward, the reference's next commit d_1 is known exactly; the next D - 1 most confident masked
positions of the block (with their argmax tokens) are drafts d_2..d_D of the commits after it. The
candidate states "current + d_1..d_j" (j = 1..D) run in ONE batched forward; from candidate j's logits
the commit rule itself says what the reference would commit next, and the deepest candidate whose
chain agrees (greedy chain) is taken. Its logits are the predictions of the next step, so verification
adds no sequential forward: every forward commits between 1 and D tokens. Under the dual cache each
candidate feeds only its block and reads the row's block-start K/V (through a read-only store), exactly
as the reference's next partial step would; a block's first step is the cache's refresh forward.
Papers: SSD (self speculative decoding for dLLMs) up to 3.46x at gen 256, block 8; FreeDave up to 2.83x,
tokens per forward about 1.0 -> 2.5 on LLaDA-8B. Typical D: 2-8.
Guarantee: the canvas is token-identical to `Sampler("confidence")` with one token per step and the same
cache (up to floating-point differences between batched and single forwards, which only matter at ties).
Shapes: B batch, D draft length, W block length, n = 2W logits window, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..cache.dual import DualCache
from .. import validation
from ..components import Need
from ..driver import Driver, LoopStep, Rows, StepLoop, count_forward
from ..loop import commit, decide, step_logits
from ..models.adapter import DiffusionLM
from ..plan import LOOPS, DecodePlan
from ..samplers.base import Decision, StepInput, choose, token_log_prob
from ..samplers.revision import WITHOUT_REVISION_HOOK
from ..state import DecodeState, scatter_rows
from .verifier import Acceptance


@LOOPS.register
@dataclass(frozen=True)
class SelfSpeculative(StepLoop):
    """Draft D stepwise commits from one forward, verify them in one batched forward, keep the agreeing chain."""

    draft_length: int = 4
    name: ClassVar[str] = "ssd"
    offers: ClassVar[frozenset[str]] = frozenset({"own_forwards"})
    needs: ClassVar[tuple[Need, ...]] = (
        WITHOUT_REVISION_HOOK,
        Need("rule", "stepwise_confidence", "ssd verifies against one-token-per-step confidence decoding",
             "use Sampler(\"ssd\")"),
        Need("blocks", "fixed_grid", "adaptive blocks would change the reference trajectory", "use fixed blocks"),
        Need("early_commit", "edits_canvas", "an early commit would change the reference trajectory",
             "remove `early_commit` and `eos_fill`", present=False),
        Need("cache", "block_candidates", "the candidates feed only their block and read its block-start K/V; a "
             "periodic refresh follows the reference's step count, which ssd skips",
             "use cache='none', or cache='dual' with refresh=None"),
        Need("attention", "any_mask", "the candidates' forward builds its own attention mask",
             "use attention='dense'"),
    )

    def __post_init__(self) -> None:
        validation.integer("draft_length", self.draft_length, low=2,
                           fix="drafted commits per forward; for one token per forward use loop=\"denoise\"")

    def check(self, plan: DecodePlan, config, given: frozenset[str]) -> None:
        if plan.steps_per_block != config.block_length:
            raise ValueError(f"`steps` must equal `gen_length` ({config.gen_length}) under `loop=\"ssd\"` (one token "
                             f"per reference step), got {plan.step_budget(config.gen_length)}; leave `steps` unset")
        if config.temperature != 0:
            raise ValueError(f"`temperature` must be 0 under `loop=\"ssd\"` (the greedy chain is exact only for "
                             f"greedy decoding), got {config.temperature}; use temperature=0")
        if plan.cfg_scale:
            raise ValueError(f"`cfg_scale` must be 0 under `loop=\"ssd\"` (guidance would change the reference "
                             f"trajectory), got {plan.cfg_scale}; remove `cfg_scale`")

    def begin(self, driver: Driver) -> "ChainStep":
        return ChainStep(self, driver)

    def stats(self, state: DecodeState) -> dict[str, Any]:
        """`mean_accepted`: reference steps taken per forward (greedy-chain depth)."""
        acceptance = state.loop_state if isinstance(state.loop_state, Acceptance) else Acceptance()
        return {"mean_accepted": acceptance.mean()}

    @staticmethod
    def _drafts(step: StepInput, decision, D: int) -> tuple[Tensor, Tensor, Tensor]:
        """Canvas columns, tokens and validity [B, D] of d_1 (the reference's commit) then the next most confident."""
        x0, logp = choose(step)
        confidence = token_log_prob(logp, x0)
        first = decision.commit & step.eligible  # exactly one per row that still has masks in its block
        score = confidence.masked_fill(~step.eligible, float("-inf")).masked_fill(first, float("inf"))
        order = score.exp().argsort(dim=-1, descending=True, stable=True)[:, :D]  # the rule's key p, ties by column
        valid = score.gather(1, order) > float("-inf")
        valid = valid & first.any(1, keepdim=True)
        return step.cols.gather(1, order), x0.gather(1, order), valid

    @staticmethod
    def _candidate_ids(state: DecodeState, pos: Tensor, tok: Tensor, valid: Tensor) -> Tensor:
        """[B, D, P + G]: candidate j holds the current sequence plus drafts d_1..d_j."""
        B, D = pos.shape
        P, G = state.prompt_width, state.gen_length
        upto = torch.arange(D, device=pos.device)
        include = (upto[None, :, None] >= upto[None, None, :]) & valid[:, None, :]  # [B, j, i]: draft i in candidate j
        canvas = state.canvas[:, None, :].expand(B, D, G).clone()  # [B, D, G]
        current = canvas.gather(2, pos[:, None, :].expand(B, D, D))
        canvas.scatter_(2, pos[:, None, :].expand(B, D, D), torch.where(include, tok[:, None, :].expand(B, D, D), current))
        return torch.cat([state.x[:, None, :P].expand(B, D, P), canvas], 2)

    @classmethod
    def _candidates(cls, model: DiffusionLM, state: DecodeState, pos: Tensor, tok: Tensor, valid: Tensor,
                    active: Tensor, rows: Tensor | None, arange_n: Tensor) -> Tensor:
        """One batched forward of candidates j = 1..D (current + d_1..d_j): logits [B, D, n, V] over the wide window."""
        B, D = pos.shape
        P, G = state.prompt_width, state.gen_length
        x = cls._candidate_ids(state, pos, tok, valid)  # [B, D, P + G]
        wide = (state.block_start[:, None] + arange_n).clamp(max=G - 1)  # [B, n]
        keep, positions = state.attention_mask, state.positions
        sel = rows if rows is not None else slice(None)
        n_rows = x[sel].shape[0]
        flat = lambda t: t[sel][:, None].expand(n_rows, D, *t.shape[1:]).reshape(n_rows * D, *t.shape[1:])  # noqa: E731
        logits = model(x[sel].reshape(n_rows * D, P + G), positions=flat(positions),
                       attention_mask=None if keep is None else flat(keep), logits_for=flat(wide + P))
        count_forward(state, active)  # the candidates are one batched verification forward
        logits = logits.view(n_rows, D, *logits.shape[1:])
        return scatter_rows(logits, rows, B)

    @classmethod
    def _candidates_cached(cls, model: DiffusionLM, state: DecodeState, pos: Tensor, tok: Tensor, valid: Tensor,
                           active: Tensor, rows: Tensor | None, arange_n: Tensor) -> Tensor:
        """Dual cache: each candidate feeds only its block (and, with a shift, the column before it) and attends
        the row's block-start K/V for every other column, exactly as the reference's next step would; writes
        nothing. Logits [B, D, W, V]."""
        B, D = pos.shape
        P, W, shift = state.prompt_width, arange_n.numel(), model.shift
        sel = rows if rows is not None else torch.arange(B, device=pos.device)
        N = sel.numel() * D
        fed = (P + state.block_start[sel] - shift)[:, None] + torch.arange(W + shift, device=pos.device)  # [b, Lq]
        fed = fed.repeat_interleave(D, 0)  # [N, Lq]
        ids = cls._candidate_ids(state, pos, tok, valid)[sel].reshape(N, -1).gather(1, fed)
        keep = state.attention_mask
        keys = None if keep is None else keep[sel].repeat_interleave(D, 0)
        store = CandidateReads(state.cache_state.buffer, sel, D, fed)
        logits = model(ids, positions=state.positions[sel].repeat_interleave(D, 0).gather(1, fed), attention_mask=keys,
                       cache=store, logits_for=(torch.arange(W, device=pos.device) + shift).expand(N, W))
        count_forward(state, active)
        logits = logits.view(sel.numel(), D, W, -1)
        return scatter_rows(logits, rows, B)

    @staticmethod
    def _agreeing_depth(plan: DecodePlan, state: DecodeState, step: StepInput, cand_logits: Tensor, pos: Tensor,
                        tok: Tensor, valid: Tensor, W: int) -> Tensor:
        """Deepest j [B] such that from every candidate i < j the reference commits exactly d_{i+1}."""
        B, D = pos.shape
        G = state.gen_length
        logits = cand_logits[:, : D - 1, :W]  # [B, D-1, W, V]: candidate windows start at the current block
        V = logits.shape[-1]
        upto = torch.arange(D, device=pos.device)
        include = (upto[None, : D - 1, None] >= upto[None, None, :]) & valid[:, None, :]  # [B, j, i]
        in_cand = torch.zeros(B, D - 1, G, dtype=torch.bool, device=pos.device)
        in_cand.scatter_(2, pos[:, None, :].expand(B, D - 1, D), include)
        masked = state.is_mask[:, None, :] & ~in_cand  # [B, D-1, G]
        cols = step.cols[:, None, :].expand(B, D - 1, W)
        eligible = step.eligible[:, None, :] & masked.gather(2, cols)
        rep = lambda t: t[:, None].expand(B, D - 1, *t.shape[1:]).reshape(B * (D - 1), *t.shape[1:])  # noqa: E731
        ref = plan.rule.commit(StepInput(
            logits.reshape(B * (D - 1), W, V), eligible.reshape(B * (D - 1), W), cols.reshape(B * (D - 1), W),
            (state.block_step[:, None] + upto[None, 1:]).reshape(-1), rep(state.block_masks), plan.steps_per_block,
            step.eos_ids, step.generator, plan.tokens, None))
        commit = ref.commit.view(B, D - 1, W)
        ref_col = cols.gather(2, commit.float().argmax(2, keepdim=True)).squeeze(2)  # [B, D-1]
        ref_tok = ref.tokens.view(B, D - 1, W).gather(2, commit.float().argmax(2, keepdim=True)).squeeze(2)
        agree = commit.any(2) & (ref_col == pos[:, 1:]) & (ref_tok == tok[:, 1:]) & valid[:, 1:]
        return 1 + agree.long().cumprod(1).sum(1)


class ChainStep(LoopStep):
    """One SSD step: the reference's forward (stored from the last candidates, or fresh), the drafts, one batched
    candidate forward, and the agreeing chain's commits. Host reads beyond the driver's sync (which also counts
    the rows needing a fresh forward): that forward's `nonzero` (on steps that have one), one read to skip a
    candidate forward nothing could use, and the rows' `nonzero` once some row has finished."""

    def __init__(self, loop: SelfSpeculative, driver: Driver) -> None:
        plan, state = driver.plan, driver.state
        self.loop, self.driver = loop, driver
        self.W, G = plan.blocks.block_length, state.gen_length
        self.D = min(loop.draft_length, self.W)  # a block never holds more than W commits
        # the logits window: with no cache a candidate that ends the block also predicts the next block (2W);
        # under the dual cache the next block starts with a refresh forward, so W is enough
        self.cached = isinstance(plan.cache, DualCache)
        self.arange_n = torch.arange(self.W if self.cached else min(2 * self.W, G), device=state.x.device)
        self.stored: tuple[Tensor, Tensor] | None = None  # (window start [B], logits [B, n, V]) reusable as a forward
        self.need: Tensor | None = None  # [B] rows taking a fresh forward this step, set in `counts`
        state.loop_state = self.acceptance = Acceptance()

    def counts(self, active: Tensor) -> list[Tensor]:
        # rows whose stored logits do not cover their block (first step, or a block start under the dual
        # cache) take a fresh forward; only they are fed (where the cache allows) and charged for it
        state, stored = self.driver.state, self.stored
        self.need = active if stored is None else active & ((state.block_start - stored[0]) + self.W >
                                                            self.arange_n.numel())
        return [self.need.sum()]

    def advance(self, rows: Rows, counts: list[int]) -> Tensor:
        d, W, D, need, active = self.driver, self.W, self.D, self.need, rows.mask
        model, state, plan = d.model, d.state, d.plan
        G = state.gen_length
        if counts[0]:
            wide = (state.block_start[:, None] + self.arange_n).clamp(max=G - 1)
            fresh = step_logits(model, state, plan, need.nonzero().squeeze(1), wide, need)
            stored = self.stored
            self.stored = (state.block_start.clone(), fresh) if stored is None else (
                torch.where(need, state.block_start, stored[0]), torch.where(need[:, None, None], fresh, stored[1]))
        start, window_logits = self.stored
        offset = ((state.block_start - start)[:, None] + torch.arange(W, device=state.x.device))
        offset = offset.clamp(max=self.arange_n.numel() - 1)
        logits = window_logits.gather(1, offset[..., None].expand(-1, -1, window_logits.shape[-1]))  # [B, W, V]
        raw = state.block_start[:, None] + torch.arange(W, device=state.x.device)
        cols, real = raw.clamp(max=G - 1), raw < G
        step, decision = decide(state, plan, logits, cols, real, active, d.eos_ids, d.generator)
        pos, tok, valid = self.loop._drafts(step, decision, D)
        # candidates are needed unless d_1 empties the block and nothing could reuse their logits (the next
        # block starts with a refresh under the dual cache; after the last block the canvas is full)
        last_in_block = valid.sum(1) <= 1
        reusable = ~last_in_block | ((state.block_end < G) & (not self.cached))
        if bool((reusable & active).any()):  # a host read only to skip a wasted forward
            candidates = self.loop._candidates_cached if self.cached else self.loop._candidates
            cand_logits = candidates(model, state, pos, tok, valid, active, rows.index, self.arange_n)
            depth = self.loop._agreeing_depth(plan, state, step, cand_logits, pos, tok, valid, W)
            chosen = (depth - 1).clamp_min(0)[:, None, None, None]
            self.stored = (state.block_start.clone(), cand_logits.gather(
                1, chosen.expand(-1, 1, *cand_logits.shape[2:])).squeeze(1))
        else:
            depth, self.stored = torch.ones_like(state.block_step), None
        take = (torch.arange(D, device=depth.device)[None, :] < depth[:, None]) & valid & active[:, None]
        commit(state, Decision(take, tok), pos, valid)
        self.acceptance.record(depth, active)
        return depth  # the rule's schedule counts reference steps


class CandidateReads:
    """A read-only `KVStore` for the candidate batch: each row's cached K/V repeated for its D candidates, the
    candidates' fresh block rows placed at their columns (out of place: the request's buffer is not touched)."""

    def __init__(self, buffer, rows: Tensor, D: int, cols: Tensor) -> None:
        self.buffer, self.rows, self.D, self.cols = buffer, rows, D, cols  # cols [N, Lq] full-sequence columns

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        keys, values = self.buffer.read(layer)  # [B, G, S, D]
        index = self.cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
        expand = lambda t: t[self.rows].repeat_interleave(self.D, 0)  # noqa: E731 - [N, G, S, D]
        return expand(keys).scatter(2, index, k), expand(values).scatter(2, index, v)

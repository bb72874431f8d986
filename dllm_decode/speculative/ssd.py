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

from ..cache.base import NoCache
from ..cache.dual import DualCache
from ..cache.rows import BUFFER
from ..kernels.base import DenseAttention
from ..loop import apply, decide, finish_step, prepare, step_logits
from ..models.adapter import DiffusionLM
from ..plan import LOOPS, DecodePlan, Loop
from ..samplers.base import StepInput, choose, token_log_prob
from ..samplers.blocks import FixedBlocks
from ..samplers.topk import LLaDATopK
from ..state import DecodeState, scatter_rows
from .verifier import mean_accepted


@LOOPS.register
@dataclass(frozen=True)
class SelfSpeculative(Loop):
    """Draft D stepwise commits from one forward, verify them in one batched forward, keep the agreeing chain."""

    draft_length: int = 4
    name: ClassVar[str] = "ssd"

    def __post_init__(self) -> None:
        if isinstance(self.draft_length, bool) or not isinstance(self.draft_length, int) or self.draft_length < 2:
            raise ValueError(f"`draft_length` must be an int >= 2 (drafted commits per forward), got "
                             f"{self.draft_length!r}; for one token per forward use loop=\"denoise\"")

    def check(self, plan: DecodePlan, config, given: frozenset[str]) -> None:
        rule = plan.rule
        if not (isinstance(rule, LLaDATopK) and rule.remasking == "low_confidence"):
            raise ValueError(f"`loop=\"ssd\"` verifies against one-token-per-step confidence decoding, so the "
                             f"commit rule must be 'confidence', got {type(rule).__name__}; use Sampler(\"ssd\")")
        if plan.steps_per_block != config.block_length:
            raise ValueError(f"`steps` must equal `gen_length` ({config.gen_length}) under `loop=\"ssd\"` (one token "
                             f"per reference step), got {plan.steps_per_block * (config.gen_length // config.block_length)}")
        if config.temperature != 0:
            raise ValueError(f"`temperature` must be 0 under `loop=\"ssd\"` (the greedy chain is exact only for "
                             f"greedy decoding), got {config.temperature}")
        dual = isinstance(plan.cache, DualCache)
        if not (isinstance(plan.cache, NoCache) or dual):
            raise ValueError(f"`cache` must be 'none' or 'dual' under `loop=\"ssd\"`, got {config.cache!r}: the "
                             "candidate forward reads the block-start K/V of the dual cache, no other layout")
        if dual and plan.cache.refresh is not None:
            raise ValueError(f"`refresh` must be None with `cache=\"dual\"` under `loop=\"ssd\"` (the reference "
                             f"refreshes on its own step count, which ssd does not follow), got {plan.cache.refresh}")
        if not isinstance(plan.attention, DenseAttention):
            raise ValueError(f"`attention` must be 'dense' under `loop=\"ssd\"`, got {config.attention!r}")
        if plan.cfg_scale or plan.early or not isinstance(plan.blocks, FixedBlocks):
            raise ValueError("`loop=\"ssd\"` supports neither `cfg_scale`, `early_commit`, `eos_fill` nor adaptive "
                             "blocks: each would change the reference trajectory; remove them")

    def run(self, model: DiffusionLM, state: DecodeState, plan: DecodePlan,
            generator: torch.Generator | None) -> None:
        eos_ids = torch.tensor(model.eos_ids, device=state.x.device)
        W, G = plan.blocks.block_length, state.gen_length
        D = min(self.draft_length, W)  # a block never holds more than W commits
        # the logits window: with no cache a candidate that ends the block also predicts the next block (2W);
        # under the dual cache the next block starts with a refresh forward, so W is enough
        cached = isinstance(plan.cache, DualCache)
        arange_n = torch.arange(W if cached else min(2 * W, G), device=state.x.device)
        prepare(model, state, plan)
        stored: tuple[Tensor, Tensor] | None = None  # (window start [B], logits [B, n, V]) reusable as a step's forward
        while True:
            active = ~state.done
            n_active = int(active.sum())  # host sync 1 of 3 per iteration (+1 below once a row has finished)
            if n_active == 0:
                break
            rows = None if n_active == active.shape[0] else active.nonzero().squeeze(1)
            # rows whose stored logits do not cover their block (first step, or a block start under the dual
            # cache) take a fresh forward; only they are fed (where the cache allows) and charged for it
            need = active if stored is None else active & ((state.block_start - stored[0]) + W > arange_n.numel())
            if bool(need.any()):  # host sync 2 of 3 (+1 in `nonzero` when some row needs a fresh forward)
                wide = (state.block_start[:, None] + arange_n).clamp(max=G - 1)
                fresh = step_logits(model, state, plan, need.nonzero().squeeze(1), wide)
                state.row_nfe += need.long()
                stored = (state.block_start.clone(), fresh) if stored is None else (
                    torch.where(need, state.block_start, stored[0]), torch.where(need[:, None, None], fresh, stored[1]))
            offset = (state.block_start - stored[0])[:, None] + torch.arange(W, device=state.x.device)
            offset = offset.clamp(max=arange_n.numel() - 1)
            logits = stored[1].gather(1, offset[..., None].expand(-1, -1, stored[1].shape[-1]))  # [B, W, V]
            raw = state.block_start[:, None] + torch.arange(W, device=state.x.device)
            cols, real = raw.clamp(max=G - 1), raw < G
            step, decision = decide(state, plan, logits, cols, real, active, eos_ids, generator)
            pos, tok, valid = self._drafts(step, decision, D)
            # candidates are needed unless d_1 empties the block and nothing could reuse their logits (the next
            # block starts with a refresh under the dual cache; after the last block the canvas is full)
            last_in_block = valid.sum(1) <= 1
            reusable = ~last_in_block | ((state.block_end < G) & (not cached))
            if bool((reusable & active).any()):  # host sync 3 of 3, only to skip a wasted forward
                candidates = self._candidates_cached if cached else self._candidates
                cand_logits = candidates(model, state, pos, tok, valid, active, rows, arange_n)
                depth = self._agreeing_depth(plan, state, step, cand_logits, pos, tok, valid, W)
                chosen = (depth - 1).clamp_min(0)[:, None, None, None]
                stored = (state.block_start.clone(), cand_logits.gather(
                    1, chosen.expand(-1, 1, *cand_logits.shape[2:])).squeeze(1))
            else:
                depth, stored = torch.ones_like(state.block_step), None
            take = (torch.arange(D, device=depth.device)[None, :] < depth[:, None]) & valid & active[:, None]
            apply(state, take, tok, pos)
            finish_step(state, plan, active, eos_ids, taken=depth)  # the rule's schedule counts reference steps
            extra = state.extras.setdefault("ssd", {"accepted": []})
            extra["accepted"].append(depth.where(active, torch.full_like(depth, -1)))

    def stats(self, state: DecodeState) -> dict[str, Any]:
        """`mean_accepted`: reference steps taken per forward (greedy-chain depth)."""
        return {"mean_accepted": mean_accepted(state.extras.get("ssd", {"accepted": []})["accepted"])}

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
        state.nfe += 1  # the candidates are one batched verification forward
        state.row_nfe += active.long()
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
        store = CandidateReads(state.extras[BUFFER], sel, D, fed)
        logits = model(ids, positions=state.positions[sel].repeat_interleave(D, 0).gather(1, fed), attention_mask=keys,
                       cache=store, logits_for=(torch.arange(W, device=pos.device) + shift).expand(N, W))
        state.nfe += 1
        state.row_nfe += active.long()
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

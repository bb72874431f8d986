"""A cohort: requests that started decoding together, advanced one step at a time.

A cohort is one `DecodeState` (its own step counter, rule state, generator and cache), stepped with the
loop's own pieces (`loop.window`, `step_logits`, `decide`, `apply`, `finish_step`) in the order
`loop.denoise` uses, so each cohort decodes exactly as `Sampler.generate` would decode its prompts as one
batch, and each row as that request alone (the library's ragged-batch guarantee).

Cohorts that recompute the whole canvas (no KV cache, dense attention, no CFG) share one forward per step:
`fused_logits` left-pads their rows to one width, runs the model once, and hands each cohort the logits of
its own rows and columns. A row's logits depend only on its own tokens (attention mask + positions), so a
request may join this shared forward at any step boundary. Cohorts with a KV cache keep their cache state
per cohort and take their own forward each step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..api import Sampler
from ..cache.base import NoCache
from ..kernels.base import DenseAttention
from ..loop import Denoise, apply, decide, finish_step, masked_first, prepare, reads_masked_only, step_logits, window
from ..models.adapter import DiffusionLM
from ..samplers.early import first_eos
from ..state import DecodeState, new_state, scatter_rows


def steppable(sampler: Sampler) -> bool:
    """Plain monotone denoising can be advanced step by step here; other loops (speculative, uniform) and the
    revising rules (whose review follows each commit inside the driver's step) run whole."""
    plan = sampler.plan
    return (plan.loop is None or type(plan.loop) is Denoise) and not plan.revision.revises


def shares_forward(sampler: Sampler) -> bool:
    """Whether a cohort's forward is a plain full-canvas forward that can be fused with other cohorts'."""
    plan = sampler.plan
    return (steppable(sampler) and type(plan.cache) is NoCache and type(plan.attention) is DenseAttention
            and plan.cfg_scale == 0)


@dataclass
class Pending:
    """One step's inputs, computed before its forward: which rows are active and which columns are read."""

    active: Tensor  # [B] bool
    rows: Tensor | None  # indices of active rows, None when all are
    cols: Tensor  # [B, n] canvas columns
    real: Tensor  # [B, n] bool


class Cohort:
    """Requests decoded as one batch; `members[i]` owns row i (None once it has left)."""

    def __init__(self, model: DiffusionLM, sampler: Sampler, prompts: list[Tensor], members: list[Any]) -> None:
        cfg, plan = sampler.decode, sampler.plan
        self.sampler, self.plan, self.members = sampler, plan, list(members)
        self.generator = None if cfg.seed is None else torch.Generator(device=model.device).manual_seed(cfg.seed)
        self.state = new_state(prompts, cfg.gen_length, plan.blocks.first_end(cfg.gen_length), model.pad_id,
                               model.mask_id, False)
        self.state.rule_state = sampler.rule.init_state(len(prompts), cfg.gen_length, self.state.x.device)
        self.eos_ids = torch.tensor(model.eos_ids, device=self.state.x.device)
        self.compact = reads_masked_only(plan)
        self.limit = 2 * cfg.gen_length * max(plan.steps_per_block or 1, 1) + 8  # as loop.denoise
        self.shared = shares_forward(sampler)
        prepare(model, self.state, plan)

    def leave(self, row: int) -> None:
        """Drop row `row` (its client went away): it stops taking part in forwards at once."""
        self.members[row] = None
        self.state.done[row] = True  # in place: `done` rows are skipped by every later step

    def pending(self) -> Pending | None:
        """This step's active rows and window, or None when every row is done (one host read, as the loop)."""
        state, plan = self.state, self.plan
        active = ~state.done
        cols, real = window(state, plan)
        if self.compact:
            masked = real & state.is_mask.gather(1, cols) & active[:, None]
            n_active, width = torch.stack([active.sum(), masked.sum(1).max()]).tolist()
        else:
            n_active = int(active.sum())
        if n_active == 0:
            return None
        if state.step >= self.limit:
            raise RuntimeError(f"decoding did not finish in {self.limit} steps: a commit rule committed nothing")
        rows = None if n_active == active.shape[0] else active.nonzero().squeeze(1)
        if self.compact and width < cols.shape[1]:
            cols, real = masked_first(cols, real, masked, max(width, 1))
        return Pending(active, rows, cols, real)

    def forward(self, model: DiffusionLM, step: Pending) -> Tensor:
        return step_logits(model, self.state, self.plan, step.rows, step.cols)

    def commit(self, step: Pending, logits: Tensor) -> None:
        """The rest of the step, as `loop.denoise`: the rule decides, commits land, blocks advance."""
        state, plan = self.state, self.plan
        state.row_nfe += step.active.long()
        _, decision = decide(state, plan, logits, step.cols, step.real, step.active, self.eos_ids, self.generator)
        apply(state, decision.commit & step.real & state.is_mask.gather(1, step.cols), decision.tokens, step.cols)
        finish_step(state, plan, step.active, self.eos_ids)

    def answers(self) -> tuple[list[bool], list[list[int]], list[list[int]], list[int]]:
        """Per row: done, ids before the first EOS (as `GenerationResult.ids`; masks while decoding), the
        canvas, forwards taken. One device->host copy per step."""
        state = self.state
        eos_at = first_eos(state.canvas, self.eos_ids)
        done, canvas, ends, nfe = (t.cpu().tolist() for t in (state.done, state.canvas, eos_at, state.row_nfe))
        return done, [row[:end] for row, end in zip(canvas, ends)], canvas, nfe


def fused_logits(model: DiffusionLM, cohorts: list[Cohort], steps: list[Pending]) -> list[Tensor]:
    """One forward for the active rows of several full-canvas cohorts; each gets logits [B_c, n_c, V] for its
    own window, as `NoCache.logits` would return them. Each cohort counts the forward, as it would alone."""
    xs, positions, keeps, targets = [], [], [], []
    for cohort, step in zip(cohorts, steps):  # once per cohort (a batch), not per row
        state = cohort.state
        rows = step.rows if step.rows is not None else torch.arange(state.x.shape[0], device=state.x.device)
        keep = state.attention_mask if state.attention_mask is not None else torch.ones_like(state.x, dtype=torch.bool)
        xs.append(state.x[rows])
        positions.append(state.positions[rows])
        keeps.append(keep[rows])
        targets.append(step.cols[rows] + state.prompt_width)
    width = max(x.shape[1] for x in xs)
    n = max(t.shape[1] for t in targets)
    # left-pad every cohort to `width` (canvases stay right-aligned); pad windows by repeating their last column
    x = torch.cat([_left(t, width, model.pad_id) for t in xs])
    pos = torch.cat([_left(t, width, 0) for t in positions])
    keep = torch.cat([_left(t, width, False) for t in keeps])
    cols = torch.cat([torch.cat([t, t[:, -1:].expand(-1, n - t.shape[1])], 1) + width - w
                      for t, w in zip(targets, (x_.shape[1] for x_ in xs))])
    logits = model(x, positions=pos, attention_mask=None if bool(keep.all()) else keep, logits_for=cols)
    out, start = [], 0
    for cohort, step, t in zip(cohorts, steps, targets):
        part = logits[start:start + t.shape[0], :t.shape[1]]
        start += t.shape[0]
        cohort.state.nfe += 1
        out.append(scatter_rows(part, step.rows, cohort.state.x.shape[0]))
    return out


def _left(t: Tensor, width: int, value: Any) -> Tensor:
    """[B, w] -> [B, width], `value` on the left."""
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], 1)

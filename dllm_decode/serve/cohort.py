"""A cohort: requests that started decoding together, advanced one step at a time.

A cohort is one request of `Sampler.start` (its own `Driver`: state, step counter, rule state, generator,
cache), stepped by the driver's split step: `pending` is `Driver.begin_step` (the host sync, the step
limit, the window), `commit` is `Driver.end_step` (decision, commit, the revision hook's review, fills,
block moves). So each cohort decodes exactly as `Sampler.generate` decodes its prompts as one batch, and
each row as that request alone (the library's ragged-batch guarantee), from the same code.

Cohorts whose step is one plain full-canvas forward (no KV cache, dense attention, no CFG, no shadow
forward) share one forward per step: `fused_logits` left-pads their rows to one width, runs the model once,
and hands each cohort the logits of its own rows and columns. A row's logits depend only on its own tokens
(attention mask + positions), so a request may join this shared forward at any step boundary. Cohorts with
a KV cache keep their cache state per cohort and take their own forward (`forward`) each step, as do
WINO's, whose shadow forward carries a 4-D mask of its own. The speculative loops (ssd, s2d2, deer) run
their step's several forwards themselves (`commit` without logits); their canvas holds committed (for deer:
verified) tokens only, drafts live in the loop's own tensors, so their committed prefix streams as final.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..api import Sampler
from ..cache.base import NoCache
from ..driver import Pending, StepLoop, count_forward
from ..kernels.base import DenseAttention
from ..loop import Denoise
from ..models.adapter import DiffusionLM
from ..samplers.early import first_eos
from ..state import scatter_rows


def steppable(sampler: Sampler) -> bool:
    """Every driver loop (plain or revising denoise, and ssd, s2d2, deer, whose steps take several forwards of
    their own) is advanced step by step here; only `uniform`, which has no driver, runs whole."""
    return isinstance(sampler.plan.loop, StepLoop)


def shares_forward(sampler: Sampler) -> bool:
    """Whether a cohort's forward is a plain full-canvas forward that can be fused with other cohorts'
    (LLaDA2.1's editing reads the plain forward; WINO's shadow forward cannot be fused)."""
    plan = sampler.plan
    return (type(plan.loop) is Denoise and type(plan.cache) is NoCache and type(plan.attention) is DenseAttention
            and plan.cfg_scale == 0 and not (plan.revision.revises and plan.revision.shadow))


class Cohort:
    """Requests decoded as one batch; `members[i]` owns row i (None once it has left)."""

    def __init__(self, model: DiffusionLM, sampler: Sampler, prompts: list[Tensor], members: list[Any]) -> None:
        self.sampler, self.members = sampler, list(members)
        self.driver = sampler.start(model, prompts)
        self.state, self.plan = self.driver.state, self.driver.plan
        self.shared = shares_forward(sampler)

    def leave(self, row: int) -> None:
        """Drop row `row` (its client went away): it stops taking part in forwards at once."""
        self.members[row] = None
        self.state.done[row] = True  # in place: `done` rows are skipped by every later step

    def pending(self) -> Pending | None:
        """This step up to its forward (`Driver.begin_step`), or None when every row is done."""
        return self.driver.begin_step()

    def forward(self, step: Pending) -> Tensor:
        """The step's own counted forward (a cache's, WINO's shadow forward): logits at `step.window.cols`."""
        return self.driver.work.forward(step.window)

    def commit(self, step: Pending, logits: Tensor | None = None) -> None:
        """The rest of the step (`Driver.end_step`): the rule decides, commits land, revisions, blocks advance.
        Without `logits` the step runs its own forwards (a speculative loop's drafts and verification)."""
        self.driver.end_step(step, logits)

    def answers(self) -> tuple[list[bool], list[list[int]], list[list[int]], list[int]]:
        """Per row: done, its final ids (a finished row's: before the first EOS, as `GenerationResult.ids`; a
        decoding row's: also cut at its block start when the rule revises, since a revision may still change
        any token of the current block), the canvas, forwards taken. One device->host copy per step."""
        state = self.state
        end = first_eos(state.canvas, self.driver.eos_ids)
        if self.plan.revision.revises:  # revisions touch the current block only (revocable.revise: `in_block`)
            end = torch.where(state.done, end, end.minimum(state.block_start))
        done, canvas, ends, nfe = (t.cpu().tolist() for t in (state.done, state.canvas, end, state.row_nfe))
        return done, [row[:e] for row, e in zip(canvas, ends)], canvas, nfe


def fused_logits(model: DiffusionLM, cohorts: list[Cohort], steps: list[Pending]) -> list[Tensor]:
    """One forward for the active rows of several full-canvas cohorts; each gets logits [B_c, n_c, V] for its
    own window, as `NoCache.logits` would return them. Each cohort counts the forward as it would alone: one
    `nfe`, one `row_nfe` per row it feeds."""
    xs, positions, keeps, targets = [], [], [], []
    for cohort, step in zip(cohorts, steps):  # once per cohort (a batch), not per row
        state, cols = cohort.state, step.window.cols
        rows = step.rows.index if step.rows.index is not None else torch.arange(state.x.shape[0], device=state.x.device)
        keep = state.attention_mask if state.attention_mask is not None else torch.ones_like(state.x, dtype=torch.bool)
        xs.append(state.x[rows])
        positions.append(state.positions[rows])
        keeps.append(keep[rows])
        targets.append(cols[rows] + state.prompt_width)
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
        count_forward(cohort.state, step.rows.mask)
        out.append(scatter_rows(part, step.rows.index, cohort.state.x.shape[0]))
    return out


def _left(t: Tensor, width: int, value: Any) -> Tensor:
    """[B, w] -> [B, width], `value` on the left."""
    if t.shape[1] == width:
        return t
    pad = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], 1)

"""The driver: the one loop skeleton every step-wise loop (denoise, ssd, s2d2, deer) runs under.

A loop contributes a `LoopStep` per request: the forwards and commits of one step. The driver owns the
rest, written once: which rows are still decoding, the step's host sync (the done count, plus any count
the step asks for), the step-limit guard, early-commit fills after the commit, block moves, the trace
history and `on_step` events, and the step counter. `Driver(...).step()` advances one step at a time
(a server interleaving requests needs that), split at its forward by `.begin_step()` / `.end_step(logits)` for
a server that fuses several requests' forwards; `.run()` steps to the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from .plan import DecodePlan, Loop
from .state import DecodeState

if TYPE_CHECKING:
    from .models.adapter import DiffusionLM


@dataclass(frozen=True)
class StepEvent:
    """What `generate(on_step=...)` receives after each step, on the CPU.

    `committed` [B, G] bool: positions committed in this step (fills by early-commit hooks included);
    `tokens` [B, G] long: their tokens, the mask id elsewhere; `canvas` [B, G] long: the canvas so far.
    """

    step: int
    committed: Tensor
    tokens: Tensor
    canvas: Tensor


def record_step(state: DecodeState) -> None:
    """Trace history and the `on_step` callback; one device->host copy per step, only when either is on."""
    if state.history is None and state.on_step is None:
        return
    canvas, stamps = torch.stack([state.canvas, state.commit_step]).cpu()  # stack copies: never aliases the state
    if state.history is not None:
        state.history.append(canvas)
    notify_step(state, state.step, canvas, stamps)


def notify_step(state: DecodeState, step: int, canvas: Tensor | None = None, stamps: Tensor | None = None) -> None:
    """The `on_step` event of the commits stamped `step` (`canvas`/`stamps`: their CPU copies, when already made).
    Loops that finalise tokens later than their forwards (the uniform loop, at each canvas end) call it then."""
    if state.on_step is None:
        return
    if canvas is None or stamps is None:
        canvas, stamps = torch.stack([state.canvas, state.commit_step]).cpu()
    committed = stamps == step  # every commit of this step (hook fills included) carries its step
    state.on_step(StepEvent(step, committed, canvas.masked_fill(~committed, state.mask_id), canvas))


def count_forward(state: DecodeState, fed: Tensor | None) -> None:
    """Accounting of one model forward: `nfe` for the request, `row_nfe` for the rows `fed` [B] bool took part."""
    state.nfe += 1
    if fed is not None:
        state.row_nfe += fed.long()


def prepare(model: "DiffusionLM", state: DecodeState, plan: DecodePlan) -> None:
    """Per-request set-up of the cache, the attention backend, the block schedule and the early-commit hooks."""
    plan.cache.new_request(model, state, plan)
    state.attention_state = plan.attention.new_request(state, plan)
    plan.blocks.new_request(model, state)  # e.g. AdaBlock resolves its delimiter ids from the tokenizer
    for hook in plan.early:
        hook.new_request(model, state)  # e.g. Prophet writes its forced anchor text into the canvas


def advance_blocks(state: DecodeState, plan: DecodePlan, active: Tensor, taken: Tensor | None = None,
                   hold: Tensor | None = None) -> None:
    """Rows whose block has no masks left move to the block holding their first remaining mask; the others
    count `taken` [B] more steps of their block (default: one per active row; SSD passes its chain depth).
    `hold` [B] bool: rows a revision rule keeps in their block (and decoding) though it has no masks."""
    G = state.gen_length
    is_mask = state.is_mask
    finished = active & ~(is_mask & state.block_mask).any(1)
    any_mask = is_mask.any(1)
    decoded = ~any_mask
    if hold is not None:  # a held row neither leaves its block nor finishes (LLaDA2.1's post-edit steps)
        finished, decoded = finished & ~hold, decoded & ~hold
    first_mask = torch.where(any_mask, is_mask.float().argmax(1), torch.full_like(state.block_start, G))
    state.block_start = torch.where(finished, plan.blocks.next_start(first_mask).clamp(max=G), state.block_start)
    taken = active.long() if taken is None else taken * active.long()
    state.block_step = torch.where(finished, torch.zeros_like(state.block_step), state.block_step + taken)
    state.done = state.done | decoded


def finish_step(state: DecodeState, plan: DecodePlan, active: Tensor, eos_ids: Tensor,
                taken: Tensor | None = None, moves_blocks: bool = True, hold: Tensor | None = None) -> None:
    """After a step's commit: early-commit fills, the trace / `on_step` event, block moves (`hold` [B]: rows a
    revision keeps in their block), the step count."""
    for hook in plan.early:
        filled = hook.after_commit(state, eos_ids)
        if filled is not None:
            state.commit_step.masked_fill_(filled, state.step)
    record_step(state)
    if moves_blocks:
        advance_blocks(state, plan, active, taken, hold)
    state.step += 1


def step_limit(plan: DecodePlan, gen_length: int) -> int:
    """Steps after which a request is declared stuck: twice the most any rule needs (one token per step, or the
    plan's steps per block for each of up to gen_length blocks), plus slack, plus the held steps a revision rule
    may add (re-masks cost none: see samplers/revision.py)."""
    held = plan.revision.extra_steps(gen_length, plan.blocks.window(gen_length))
    return 2 * gen_length * max(plan.steps_per_block or 1, 1) + 8 + held


@dataclass
class Rows:
    """The rows still decoding at a step: the [B] bool mask and their count, read on the host by the driver."""

    mask: Tensor
    count: int

    @cached_property
    def index(self) -> Tensor | None:
        """Their batch ids for a forward that drops finished rows; None while every row decodes. The `nonzero`
        is a host sync, paid only on steps after some row has finished and only by steps that ask."""
        return None if self.count == self.mask.shape[0] else self.mask.nonzero().squeeze(1)


class LoopStep:
    """One request's step work for a loop: forwards and the commit. Made by `StepLoop.begin`, it keeps the
    loop's per-request state (stored logits, a verifier's KV cache) as typed attributes."""

    moves_blocks: ClassVar[bool] = True  # False: the loop tracks progress itself (DEER's verified length)

    def counts(self, active: Tensor) -> list[Tensor]:
        """0-d long tensors the step needs on the host, read in the driver's one sync with the done count."""
        return []

    def advance(self, rows: Rows, counts: list[int]) -> Tensor | None:
        """Forwards and commits of one step for `rows`; returns the block steps taken per row [B] (None: one)."""
        raise NotImplementedError


@dataclass
class Window:
    """A one-forward step's prepared forward: the rows it feeds and the canvas columns [B, n] it reads (`real`
    [B, n] bool: not a clamped or padding column)."""

    rows: Rows
    cols: Tensor
    real: Tensor


class ForwardStep(LoopStep):
    """A step of exactly one forward, split so a caller can supply that forward's logits (a server fusing several
    requests' forwards into one): `prepare_step`, then `forward` (or the caller's logits), then `finish`."""

    def prepare_step(self, rows: Rows, counts: list[int]) -> Window:
        """The forward's rows and columns, from the step's host `counts` (e.g. the head's width)."""
        raise NotImplementedError

    def forward(self, window: Window) -> Tensor:
        """The step's own counted forward: logits [B, n, V] at `window.cols`."""
        raise NotImplementedError

    def finish(self, window: Window, logits: Tensor) -> Tensor | None:
        """Everything after the forward (decision, commit, review); returns the block steps taken, as `advance`."""
        raise NotImplementedError

    def advance(self, rows: Rows, counts: list[int]) -> Tensor | None:
        window = self.prepare_step(rows, counts)
        return self.finish(window, self.forward(window))


@dataclass
class Pending:
    """A begun driver step: the rows decoding, the counts read in its host sync, and for a `ForwardStep` its
    prepared forward (None for other loops, which run their step whole)."""

    rows: Rows
    counts: list[int]
    window: Window | None


class StepLoop(Loop):
    """A loop that contributes one step at a time to the `Driver`."""

    def begin(self, driver: "Driver") -> LoopStep:
        """Per-request set-up after `prepare`; the returned step runs once per driver step."""
        raise NotImplementedError

    def run(self, model: "DiffusionLM", state: DecodeState, plan: DecodePlan,
            generator: torch.Generator | None) -> None:
        Driver(model, state, plan, generator).run()


class Driver:
    """Runs one request's decoding under `plan.loop` (a `StepLoop`), one step per `step()` call."""

    def __init__(self, model: "DiffusionLM", state: DecodeState, plan: DecodePlan,
                 generator: torch.Generator | None) -> None:
        loop = plan.loop
        if not isinstance(loop, StepLoop):
            raise ValueError(f"`loop` must contribute steps (a StepLoop) to be driven step by step, got "
                             f"{type(loop).__name__}; call `plan.loop.run(...)` for it instead")
        self.model, self.state, self.plan, self.generator = model, state, plan, generator
        self.eos_ids = torch.tensor(model.eos_ids, device=state.x.device)  # once per request, on its device
        self.limit = step_limit(plan, state.gen_length)
        self.finished = False
        prepare(model, state, plan)
        self.work = loop.begin(self)

    def step(self) -> bool:
        """Advance one step; False (and nothing run) once every row is done."""
        pending = self.begin_step()
        if pending is None:
            return False
        self.end_step(pending)
        return True

    def begin_step(self) -> Pending | None:
        """The step up to its forward: the one host sync and the step-limit guard; None once every row is done.
        For a `ForwardStep` it also prepares the forward, whose logits `end_step` may then be handed."""
        if self.finished:
            return None
        state = self.state
        active = ~state.done
        # the step's one host sync: the rows still decoding, plus the counts the step asked for
        n_active, *counts = torch.stack([active.sum(), *self.work.counts(active)]).tolist()
        if n_active == 0:
            self.finished = True
            return None
        if state.step >= self.limit:
            name = self.plan.loop.name
            raise RuntimeError(f"`loop={name!r}` did not finish in {self.limit} steps: some row committed nothing "
                               f"step after step (a commit rule that never commits, e.g. a threshold no token "
                               f"reaches with nothing forcing one per step); use a preset rule, which commits at "
                               f"least one token per row and step")
        rows = Rows(active, n_active)
        window = self.work.prepare_step(rows, counts) if isinstance(self.work, ForwardStep) else None
        return Pending(rows, counts, window)

    def end_step(self, pending: Pending, logits: Tensor | None = None) -> None:
        """The rest of a begun step: the step's work (with `logits` [B, n, V] at `pending.window.cols` when the
        caller ran the forward, which it then also counted), then early-commit fills, block moves, the count."""
        if pending.window is None:
            if logits is not None:
                raise ValueError(f"`logits` can be supplied only to a one-forward step (loop `denoise`), got them "
                                 f"for `loop={self.plan.loop.name!r}`; call `end_step(pending)` for it")
            taken = self.work.advance(pending.rows, pending.counts)
        else:
            work = self.work
            taken = work.finish(pending.window, work.forward(pending.window) if logits is None else logits)
        revision = self.state.revision_state  # set by a loop with the revision hook (loop.DenoiseStep) when revising
        finish_step(self.state, self.plan, pending.rows.mask, self.eos_ids, taken, self.work.moves_blocks,
                    None if revision is None else revision.hold)

    def run(self) -> None:
        while self.step():
            pass

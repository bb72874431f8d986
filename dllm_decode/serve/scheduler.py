"""The scheduler: one thread owns the model, admits requests at step boundaries and steps every cohort.

Which request joins how (docs/results/serve.md has the table):
- plain denoising without a KV cache (dense attention, no CFG; LLaDA2.1's editing included): the requests
  admitted at a boundary form a cohort per sampler configuration, and every such cohort shares one forward
  per step, so a request joins the running batch at the next step boundary whatever its settings;
- plain denoising with a KV cache, sparse attention, CFG or WINO's shadow forward: the requests of one
  configuration admitted at a boundary start a new cohort, which then steps beside the running ones with
  its own forward (a cache holds per-batch K/V that a newcomer cannot be spliced into);
- a request with a `seed` always decodes as a cohort of its own, since a generator serves a whole batch
  and its draws would interleave with its neighbours' (no-cache seeded cohorts still share the forward);
- the speculative loops (ssd, s2d2, deer) form cohorts as a KV-cache configuration does, and each such
  cohort runs its step's own forwards (drafts, candidates, verification), never fused, between the others';
- `uniform` (no driver) runs whole through `Sampler.generate`, one request at a time, between two steps.
A finished row is answered and leaves at the step it finishes; a cancelled one leaves at the next boundary.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

import torch

from ..models.adapter import DiffusionLM
from .cohort import Cohort, fused_logits, steppable
from .metrics import Metrics
from .schema import Job

log = logging.getLogger("dllm_decode.serve")


class QueueFull(Exception):
    """The waiting queue is at its bound: the request is refused (HTTP 429)."""


class Abandoned(Exception):
    """Raised inside `on_step` to stop a whole-run request whose client went away."""


class Ticket:
    """A job in flight. `deliver(kind, payload)` is called on the scheduler thread with ("step", row) after
    each step, then once ("done", answer) or ("error", (HTTP status, message)); it must be thread-safe and quick."""

    def __init__(self, job: Job, deliver: Callable[[str, Any], None]) -> None:
        self.job, self.deliver = job, deliver
        self.cancelled = False
        self.submitted = time.perf_counter()


class Scheduler:
    def __init__(self, model: DiffusionLM, metrics: Metrics, max_queue: int = 64, max_rows: int = 32) -> None:
        self.model, self.metrics = model, metrics
        self.max_queue, self.max_rows = max_queue, max_rows
        self._waiting: deque[Ticket] = deque()
        self._cohorts: list[Cohort] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dllm-serve-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def submit(self, ticket: Ticket) -> None:
        with self._wake:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the queue holds {self.max_queue} waiting requests (`--max-queue`); retry later")
            self._waiting.append(ticket)
            self.metrics.set_queue(len(self._waiting))
            self._wake.notify()

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: its row leaves at the next step boundary (or it never starts)."""
        ticket.cancelled = True

    def _run(self) -> None:
        with torch.no_grad():  # grad mode is per thread
            while True:
                with self._wake:
                    while not self._stopping and not self._waiting and not self._cohorts:
                        self._wake.wait()
                    if self._stopping:
                        return
                    admitted = self._admit()
                self._start(admitted)
                self._step()

    def _admit(self) -> list[Ticket]:
        """Waiting tickets that fit under `max_rows` rows in flight (called with the lock held)."""
        rows = sum(sum(m is not None for m in c.members) for c in self._cohorts)
        admitted = []
        while self._waiting and rows + len(admitted) < self.max_rows:
            ticket = self._waiting.popleft()
            if not ticket.cancelled:
                admitted.append(ticket)
        self.metrics.set_queue(len(self._waiting))
        return admitted

    def _start(self, tickets: list[Ticket]) -> None:
        """New cohorts: one per configuration, one per seeded request; `uniform` runs whole here and now."""
        groups: dict[Any, list[Ticket]] = {}
        for ticket in tickets:
            sampler = ticket.job.sampler
            if not steppable(sampler):
                self._run_whole(ticket)
            elif sampler.decode.seed is not None:
                groups[id(ticket)] = [ticket]
            else:
                groups.setdefault(repr(sorted(sampler.config.items())), []).append(ticket)
        for members in groups.values():
            try:
                self._cohorts.append(Cohort(self.model, members[0].job.sampler, [t.job.prompt for t in members],
                                            members))
            except Exception as err:  # noqa: BLE001 - a request the model cannot decode must not stop the server
                self._fail(members, err)
        self.metrics.set_rows(sum(sum(m is not None for m in c.members) for c in self._cohorts))

    def _step(self) -> None:
        """One step of every cohort: one shared forward for the full-canvas ones, one each for the others."""
        for cohort in self._cohorts:
            for row, ticket in enumerate(cohort.members):
                if ticket is not None and ticket.cancelled:
                    cohort.leave(row)
        self._step_shared([c for c in self._cohorts if c.shared])
        for cohort in [c for c in self._cohorts if not c.shared]:
            self._guard(cohort, self._step_own)
        self._cohorts = [c for c in self._cohorts if any(m is not None for m in c.members)]
        self.metrics.set_rows(sum(sum(m is not None for m in c.members) for c in self._cohorts))

    def _step_shared(self, cohorts: list[Cohort]) -> None:
        """If the shared forward raises, each cohort retries alone, so only the one at fault fails."""
        steps = {id(c): self._guard(c, Cohort.pending) for c in cohorts}
        live = [c for c in cohorts if steps[id(c)] is not None]
        try:
            logits = fused_logits(self.model, live, [steps[id(c)] for c in live]) if live else []
        except Exception:  # noqa: BLE001 - isolate the cohort at fault below
            log.warning("a shared forward failed; stepping its cohorts one by one", exc_info=True)
            for cohort in live:
                self._guard(cohort, lambda c: c.commit(steps[id(c)], c.forward(steps[id(c)])))
            self.metrics.add_forwards(len(live))
        else:
            self.metrics.add_forwards(int(bool(live)))
            for cohort, part in zip(live, logits):
                self._guard(cohort, lambda c: c.commit(steps[id(c)], part))
        for cohort in cohorts:
            self._guard(cohort, self._report)

    def _step_own(self, cohort: Cohort) -> None:
        """A step with the cohort's own forwards: one (a cache's, WINO's) or several (a speculative loop's)."""
        step = cohort.pending()
        if step is not None:
            before = cohort.state.nfe
            cohort.commit(step)  # `Driver.end_step` runs the step's own forward(s), counted in `nfe`
            self.metrics.add_forwards(cohort.state.nfe - before)
        self._report(cohort)

    def _guard(self, cohort: Cohort, action: Callable[[Cohort], Any]) -> Any:
        """`action(cohort)`; if it raises, the cohort's requests get the error and the cohort retires."""
        if not any(m is not None for m in cohort.members):
            return None
        try:
            return action(cohort)
        except Exception as err:  # noqa: BLE001 - one failing batch must not take the others down
            log.warning("a decoding step failed", exc_info=True)
            self._fail([m for m in cohort.members if m is not None], err)
            cohort.members = [None] * len(cohort.members)
            return None

    def _report(self, cohort: Cohort) -> None:
        """Progress to streaming members; answers to finished ones, which leave the cohort at once."""
        members = [(row, t) for row, t in enumerate(cohort.members) if t is not None]
        if not members:
            return
        if not any(t.job.stream for _, t in members):
            done = cohort.state.done.tolist()  # the one read per step a silent cohort needs
            if not any(done[row] for row, _ in members):
                return
        done, ids, canvas, nfe = cohort.answers()
        for row, ticket in members:  # host-side replies, once per request
            if ticket.job.stream:
                ticket.deliver("step", {"ids": ids[row], "canvas": canvas[row]})
            if done[row]:
                ticket.deliver("done", {"ids": ids[row], "nfe": nfe[row]})
                cohort.members[row] = None

    def _run_whole(self, ticket: Ticket) -> None:
        """A loop without a driver (`uniform`): `Sampler.generate` for this request alone."""
        def on_step(event: Any) -> None:
            if ticket.cancelled:
                raise Abandoned
            if ticket.job.stream and ticket.job.stream_canvas:
                ticket.deliver("step", {"ids": None, "canvas": event.canvas[0].tolist()})

        try:
            result = ticket.job.sampler.generate(self.model, ticket.job.prompt, on_step=on_step)
        except Abandoned:
            return
        except Exception as err:  # noqa: BLE001 - answered as an error, the server keeps serving
            self._fail([ticket], err)
            return
        self.metrics.add_forwards(result.nfe)
        ticket.deliver("done", {"ids": result.ids[0], "nfe": result.row_nfe[0]})

    def _fail(self, tickets: list[Ticket], err: Exception) -> None:
        """A `ValueError` is the request's fault (400, the library's message); anything else is the server's (500)."""
        status = 400 if isinstance(err, ValueError) else 500
        for ticket in tickets:
            ticket.deliver("error", (status, str(err) if status == 400 else f"{type(err).__name__}: {err}"))

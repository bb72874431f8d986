"""The driver every step-wise loop runs under: stepping by hand, the stuck-rule guard, typed per-axis state."""
from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from dllm_decode import Sampler, load_model
from dllm_decode.cache.windowed import WindowState
from dllm_decode.driver import Driver, step_limit
from dllm_decode.samplers.base import Decision
from dllm_decode.samplers.editing import EditingState
from dllm_decode.samplers.revision import Monotone
from dllm_decode.samplers.threshold import Threshold
from dllm_decode.samplers.topk import LLaDATopK
from dllm_decode.speculative.deer import DraftStep
from dllm_decode.speculative.routing import ROUTE_CLASSES, UCB, Arms, Hysteresis, Outcome, Switch
from dllm_decode.speculative.s2d2 import S2D2
from dllm_decode.speculative.verifier import Acceptance
from dllm_decode.uniform import UniformDenoise

PROMPTS = ["copy [ Gemma Murray ]", "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]"]
G = 16


@pytest.fixture(scope="module")
def zoo():
    torch.set_num_threads(1)
    return {name: load_model(name) for name in ("tiny-llada", "tiny-sdar", "tiny-ar", "tiny-deer-drafter")}


def driver_for(sampler: Sampler, model, prompts=PROMPTS) -> Driver:
    """A driver over a fresh request state, set up as `Sampler.generate` sets it up (`Sampler.start`)."""
    return sampler.start(model, prompts)


def cases(zoo):
    drafter = zoo["tiny-deer-drafter"]
    return [("tiny-llada", Sampler("threshold", gen_length=G, block_length=4)),
            ("tiny-llada", Sampler("ssd", gen_length=G, block_length=4)),
            ("tiny-sdar", Sampler("s2d2", gen_length=G)),
            ("tiny-ar", Sampler("deer", gen_length=G, drafter=drafter, draft_length=4))]


def test_stepping_by_hand_equals_generate(zoo):
    for name, sampler in cases(zoo):
        model = zoo[name]
        driver = driver_for(sampler, model)
        steps = 0
        while driver.step():
            steps += 1
        assert not driver.step(), "a finished driver runs nothing more"
        expected = sampler.generate(model, PROMPTS)
        assert torch.equal(driver.state.canvas, expected.canvas), name
        assert (steps, driver.state.nfe) == (expected.steps, expected.nfe), name


def test_the_driver_refuses_a_loop_that_does_not_step(zoo):
    sampler = Sampler("threshold", gen_length=G, block_length=4)
    driver = driver_for(sampler, zoo["tiny-llada"])
    plan = dataclasses.replace(driver.plan, loop=UniformDenoise())  # runs whole canvases, contributes no steps
    with pytest.raises(ValueError, match="`loop` must contribute steps"):
        Driver(driver.model, driver.state, plan, None)


def commit_nothing(self, step):
    return Decision(torch.zeros_like(step.eligible), step.logits.argmax(-1))


@pytest.mark.parametrize("case", ["denoise", "ssd", "s2d2", "deer"])
def test_a_loop_whose_step_commits_nothing_stops_with_an_error(zoo, monkeypatch, case):
    drafter = zoo["tiny-deer-drafter"]
    name, sampler = {
        "denoise": ("tiny-llada", Sampler("threshold", gen_length=G, block_length=4)),
        "ssd": ("tiny-llada", Sampler("ssd", gen_length=G, block_length=4)),
        "s2d2": ("tiny-sdar", Sampler("s2d2", gen_length=G, route="never")),
        "deer": ("tiny-ar", Sampler("deer", gen_length=G, drafter=drafter, draft_length=4)),
    }[case]
    monkeypatch.setattr(Threshold, "commit", commit_nothing)
    monkeypatch.setattr(LLaDATopK, "commit", commit_nothing)
    monkeypatch.setattr(DraftStep, "write", lambda self, drafts, verdict, active: self.length)  # verifies, writes none
    driver = driver_for(sampler, zoo[name])
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=f"`loop={case!r}` did not finish in {driver.limit} steps.*use a preset"):
        driver.run()
    assert driver.state.step == driver.limit == step_limit(driver.plan, G)
    assert time.perf_counter() - start < 120  # bounded: the limit is a few hundred tiny forwards


def test_speculative_accounting_is_a_typed_record(zoo):
    for name, sampler in cases(zoo)[1:]:
        driver = driver_for(sampler, zoo[name])
        driver.run()
        acceptance = driver.state.loop_state
        assert isinstance(acceptance, Acceptance) and len(acceptance.chunks) == driver.state.step
        assert all(chunk.shape == (len(PROMPTS),) for chunk in acceptance.chunks)


def test_routes_are_classes_with_typed_state():
    loop = S2D2(route="hysteresis", route_cost=1.0, hysteresis_on=1.0, hysteresis_off=-2.0)
    route = ROUTE_CLASSES["hysteresis"].from_options(loop)
    assert route == Hysteresis(route_cost=1.0, hysteresis_on=1.0, hysteresis_off=-2.0)
    state = route.new_request(2, torch.device("cpu"))
    assert isinstance(state, Switch) and state.on.all()
    rows = torch.tensor([True, True])
    span_len = torch.tensor([3, 0])
    assert route.verifying(state, span_len, torch.zeros(2)).tolist() == [True, False], "an empty span never verifies"
    # a verifying row that accepts nothing loses the cost each step and switches off below -2
    for _ in range(3):
        state = route.update(state, Outcome(rows, torch.tensor([True, False]), torch.tensor([0.0, 5.0]),
                                            torch.tensor([0, 0]), torch.tensor([1, 1])))
    assert state.on.tolist() == [False, True] and state.balance[0] == 0.0
    ucb = UCB(ucb_c=1.0)
    arms = ucb.new_request(1, torch.device("cpu"))
    assert isinstance(arms, Arms)
    first = ucb.choose(arms, torch.tensor([2]), torch.zeros(1))
    assert first.tolist() == [False], "both arms unpulled: ties go to skipping"
    arms = ucb.update(arms, Outcome(torch.tensor([True]), torch.tensor([False]), torch.zeros(1), torch.zeros(1),
                                    torch.tensor([1])))
    assert ucb.choose(arms, torch.tensor([2]), torch.zeros(1)).tolist() == [True], "the unpulled arm goes next"
    assert ROUTE_CLASSES["never"]().verifying(None, span_len, torch.zeros(2)).tolist() == [False, False]


def test_the_windowed_phase_moves_after_the_refresh_forward(zoo):
    model = zoo["tiny-llada"]
    sampler = Sampler("confidence", gen_length=G, block_length=G, cache="windowed", refresh=2, active_masks=2,
                      attended_masks=4)
    driver = driver_for(sampler, model)
    state, cache = driver.state, driver.plan.cache
    assert isinstance(state.cache_state, WindowState) and state.cache_state.buffer is not None
    phases = []
    for _ in range(4):
        before = state.cache_state.phase_start.clone()
        cache.refresh_rows(model, state)
        assert torch.equal(state.cache_state.phase_start, before), "choosing refresh rows writes no state"
        driver.step()
        phases.append(state.cache_state.phase_start.tolist())
    assert phases == [[0, 0], [0, 0], [2, 2], [2, 2]]


def test_a_revision_holds_its_rows_open_under_the_driver(zoo):
    """LLaDA2.1's editing keeps a row whose canvas has no masks decoding for a post-edit step (`hold`), and the
    step limit grows by the held steps the rule may add."""
    sampler = Sampler("llada21", gen_length=G, block_length=4, edit_threshold=1.0, max_post_edit_steps=2)
    driver = driver_for(sampler, zoo["tiny-llada"])
    state = driver.state
    assert isinstance(state.revision_state, EditingState)
    monotone = dataclasses.replace(driver.plan, revision=Monotone())
    assert driver.limit == step_limit(monotone, G) + (G // 4 + 1) * (2 + 1)
    held = 0
    while driver.step():
        held += int((~state.is_mask.any(1) & ~state.done).sum())  # rows with nothing left to unmask, still open
    assert held > 0 and bool(state.done.all()) and not bool(state.is_mask.any())


@pytest.mark.parametrize("name", ["threshold", "wino", "llada21"])
def test_the_split_step_composed_equals_step(zoo, name):
    """`begin_step`, the step's own forward handed in as logits, then `end_step`: the same request as `step()`
    (canvas, steps, forwards per request and per row), a revising rule's hook and held rows included."""
    model = zoo["tiny-llada"]
    sampler = Sampler(name, gen_length=G, block_length=4)
    whole, split = driver_for(sampler, model), driver_for(sampler, model)
    with torch.no_grad():
        whole.run()
        while (pending := split.begin_step()) is not None:
            split.end_step(pending, split.work.forward(pending.window))
    a, b = whole.state, split.state
    assert torch.equal(a.canvas, b.canvas) and torch.equal(a.row_nfe, b.row_nfe)
    assert (a.step, a.nfe) == (b.step, b.nfe) and split.begin_step() is None


def test_only_a_one_forward_step_takes_logits(zoo):
    driver = Sampler("ssd", gen_length=G, block_length=4).start(zoo["tiny-llada"], PROMPTS)
    pending = driver.begin_step()
    assert pending.window is None
    with pytest.raises(ValueError, match="`logits` can be supplied only to a one-forward step.*`loop='ssd'`"):
        driver.end_step(pending, torch.zeros(2, 4, 8))

"""`generate(on_step=...)`: streamed commits add up to the final canvas, on the plain and speculative loops."""
from __future__ import annotations

import pytest
import torch

from dllm_decode import Sampler, load_model
from dllm_decode.loop import StepEvent
from dllm_decode.models import zoo_names

PROMPTS = ["copy [ Gemma Murray ]", "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]"]


def streamed(sampler: Sampler, model, prompts) -> tuple[list[StepEvent], object]:
    events: list[StepEvent] = []
    result = sampler.generate(model, prompts, on_step=events.append)
    return events, result


def assert_streams_the_canvas(events: list[StepEvent], result) -> None:
    """Each position is streamed exactly once, and the streamed tokens rebuild the final canvas."""
    assert [e.step for e in events] == list(range(result.steps))
    committed = torch.stack([e.committed for e in events])  # [steps, B, G]
    assert torch.equal(committed.sum(0), torch.ones_like(result.canvas))
    rebuilt = torch.stack([e.tokens for e in events]).where(committed, 0).sum(0)
    assert torch.equal(rebuilt, result.canvas.cpu())
    assert torch.equal(events[-1].canvas, result.canvas.cpu())
    assert all(e.committed.any() for e in events)  # every step commits something in some row


@pytest.fixture(scope="module")
def llada():
    torch.set_num_threads(1)
    return load_model("tiny-llada")


@pytest.mark.parametrize("name,options", [("threshold", {"threshold": 0.7}), ("confidence", {"steps": 16}),
                                          ("ssd", {"draft_length": 4}), ("prophet", {"steps": 32})])
def test_streamed_commits_rebuild_the_canvas(llada, name, options):
    sampler = Sampler(name, gen_length=32, block_length=8, trace=True, **options)
    events, result = streamed(sampler, llada, PROMPTS)
    assert_streams_the_canvas(events, result)
    # the stream agrees with the trace: a position streams at the step the trace says it was committed
    steps = torch.stack([e.committed for e in events]).long().argmax(0)
    assert torch.equal(steps, result.trace.commit_step.cpu())
    assert torch.equal(result.canvas, sampler.generate(llada, PROMPTS).canvas)  # the callback changes nothing


@pytest.mark.skipif("tiny-sdar" not in zoo_names(), reason="tiny-sdar not in the zoo")
def test_s2d2_streams_its_commits():
    model = load_model("tiny-sdar")
    events, result = streamed(Sampler("s2d2", gen_length=16, block_length=4), model, PROMPTS[:1])
    assert_streams_the_canvas(events, result)


@pytest.mark.skipif("tiny-ar" not in zoo_names() or "tiny-deer-drafter" not in zoo_names(),
                    reason="tiny-ar / tiny-deer-drafter not in the zoo")
def test_deer_streams_its_accepted_drafts():
    from dllm_decode.speculative import load_causal_lm

    target = load_causal_lm("tiny-ar")
    sampler = Sampler("deer", drafter="tiny-deer-drafter", draft_length=8, gen_length=32)
    events, result = streamed(sampler, target, PROMPTS)
    assert_streams_the_canvas(events, result)
    assert any(e.committed.sum(1).max() > 1 for e in events)  # accepted drafts arrive several at a time


def test_on_step_must_be_callable(llada):
    with pytest.raises(ValueError, match="`on_step` must be a callable taking a StepEvent, got int"):
        Sampler("threshold", gen_length=32).generate(llada, PROMPTS[0], on_step=3)

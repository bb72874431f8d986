"""Property checks of the mission's policies: CreditDecoding, LocalLeap, Prophet, SchED, AdaBlock, EoTP.

Random models are nearly uniform (max probability ~1/V), so the fixtures scale the LM head by 8 to
spread confidences over ~0.05-0.25; thresholds in that range then commit several tokens per step.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dllm_decode import Sampler, wrap
from dllm_decode.samplers.adablock import AdaBlock, Delimiters, resolve_delimiters
from dllm_decode.samplers.base import StepInput, TokenOptions
from dllm_decode.samplers.credit import CreditDecoding
from dllm_decode.samplers.localleap import LocalLeap
from dllm_decode.samplers.threshold import Threshold
from dllm_decode.state import new_state

from .conftest import EOS, MASK, tiny_dream_module, tiny_llada_module

G = 32


def sharpened(module: nn.Module, head: str, scale: float = 8.0) -> nn.Module:
    with torch.no_grad():
        dict(module.named_parameters())[head].mul_(scale)
    return module


class LateEos(nn.Module):
    """A random LLaDA whose EOS logit grows along the sequence, so EOS shows up inside the canvas."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids):
        logits = self.inner(input_ids).logits.clone()
        ramp = torch.linspace(-20.0, 30.0, input_ids.shape[1])
        logits[..., EOS] += ramp  # in place on a fresh clone
        return logits


@pytest.fixture(scope="module")
def models():
    llada = sharpened(tiny_llada_module(), "model.transformer.ff_out.weight")
    dream = sharpened(tiny_dream_module(), "lm_head.weight", scale=14.0)
    return {"llada": wrap(llada, mask_id=MASK, eos_ids=(EOS,)), "dream": wrap(dream, mask_id=MASK, eos_ids=(EOS,))}


@pytest.fixture(params=["llada", "dream"])
def model(request, models):
    return models[request.param]


@pytest.fixture(scope="module")
def eos_model():
    return wrap(LateEos(sharpened(tiny_llada_module(seed=3), "model.transformer.ff_out.weight")), mask_id=MASK,
                eos_ids=(EOS,))


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 90, (2, 7), generator=g)


def run(model, prompts, name, **options):
    return Sampler(name, gen_length=G, trace=True, **options).generate(model, prompts)


def same_decoding(a, b) -> None:
    assert torch.equal(a.canvas, b.canvas)
    assert torch.equal(a.trace.commit_step, b.trace.commit_step), "not the same step for step"
    assert a.nfe == b.nfe


# --- CreditDecoding -------------------------------------------------------------------------------------------

def test_credit_alpha_zero_equals_threshold(model, prompts):
    base = run(model, prompts, "threshold", block_length=8, threshold=0.15)
    assert base.nfe < G, "the test needs multi-token commits"
    same_decoding(run(model, prompts, "creditdecoding", block_length=8, threshold=0.15, alpha=0.0), base)


def test_credit_accelerates_and_every_step_commits(model, prompts):
    base = run(model, prompts, "threshold", block_length=8, threshold=0.3)
    credit = run(model, prompts, "creditdecoding", block_length=8, threshold=0.3)
    assert credit.nfe <= base.nfe
    assert not (credit.canvas == MASK).any()
    assert credit.trace.commit_step.max() < credit.nfe


def test_credit_store_is_sparse_and_resets_per_row():
    rule = CreditDecoding(slots=3)
    store = rule.init_state(2, G, torch.device("cpu"))
    assert store.ids.shape == store.values.shape == (2, G, 3)
    logits = torch.zeros(2, 4, 10)
    logits[:, :, 7] = 3.0
    step = StepInput(logits, torch.ones(2, 4, dtype=torch.bool), torch.arange(4).expand(2, 4),
                     torch.zeros(2, dtype=torch.long), torch.full((2,), 4), None, torch.tensor([9]), None,
                     TokenOptions(), store)
    store = rule.commit(step).rule_state
    assert (store.ids[:, :4, 0] == 7).all() and (store.values[:, :4, 0] > 0).all()
    assert (store.ids[:, 4:] == -1).all(), "only the window's eligible positions earn credit"
    again = rule.commit(StepInput(**{**step.__dict__, "rule_state": store})).rule_state
    assert (again.ids[:, :4, 1:] == -1).all(), "a repeated top-1 accumulates in its slot"
    assert torch.allclose(again.values[:, :4, 0], store.values[:, :4, 0] * (1 + rule.beta))
    reset = rule.reset(again, torch.tensor([True, False]))
    assert (reset.ids[0] == -1).all() and (reset.values[0] == 0).all()
    assert torch.equal(reset.values[1], again.values[1])


# --- LocalLeap ------------------------------------------------------------------------------------------------

def test_localleap_without_relaxation_equals_threshold(model, prompts):
    base = run(model, prompts, "threshold", block_length=8, threshold=0.15)
    same_decoding(run(model, prompts, "localleap", block_length=8, threshold=0.15, relaxed_threshold=0.15), base)
    same_decoding(run(model, prompts, "localleap", block_length=8, threshold=0.15, relaxed_threshold=0.05,
                      radius=0), base)


def test_localleap_relaxes_only_near_anchors():
    confidence = torch.tensor([[0.95, 0.8, 0.8, 0.1, 0.8, 0.8, 0.8, 0.8]])
    rest = (1 - confidence) / 2
    logits = torch.log(torch.stack([confidence, rest, rest], -1))  # p[x0] = max(c, (1 - c) / 2)
    n = confidence.shape[1]
    step = StepInput(logits, torch.ones(1, n, dtype=torch.bool), torch.arange(n)[None],
                     torch.zeros(1, dtype=torch.long), torch.full((1,), n), None, torch.tensor([5]), None, TokenOptions())
    commit = LocalLeap(threshold=0.9, relaxed_threshold=0.75, radius=2).commit(step).commit
    assert commit[0].tolist() == [True, True, True, False, False, False, False, False]
    assert Threshold(0.9).commit(step).commit[0].tolist() == [True] + [False] * 7


# --- Prophet and SchED ----------------------------------------------------------------------------------------

UNREACHABLE = {"prophet": dict(early=1e9, mid=1e9, late=1e9), "sched": dict(tau_high=1e9, tau_low=1e9)}
IMMEDIATE = {"prophet": dict(early=0.0, mid=0.0, late=0.0), "sched": dict(tau_high=0.0, tau_low=0.0)}


@pytest.mark.parametrize("hook", ["prophet", "sched"])
@pytest.mark.parametrize("base,opts", [("confidence", dict(block_length=8)),
                                       ("threshold", dict(block_length=8, threshold=0.15))])
def test_unreachable_gap_equals_base_rule(model, prompts, hook, base, opts):
    same_decoding(run(model, prompts, base, early_commit=hook, **UNREACHABLE[hook], **opts),
                  run(model, prompts, base, **opts))


@pytest.mark.parametrize("hook", ["prophet", "sched"])
def test_zero_gap_threshold_finishes_after_one_forward(model, prompts, hook):
    result = run(model, prompts, hook, block_length=8, **IMMEDIATE[hook])
    assert result.nfe == 1 and not (result.canvas == MASK).any()
    first = model(torch.cat([prompts, torch.full((2, G), MASK)], 1))[:, prompts.shape[1]:].argmax(-1)
    assert torch.equal(result.canvas, first), "the all-in commit fills every mask with the first step's x0"


@pytest.mark.parametrize("cache", ["prefix", "dual", "delayed", "windowed"])
@pytest.mark.parametrize("hook", ["prophet", "sched"])
def test_gap_rules_compose_with_caches(model, prompts, hook, cache):
    """Unreachable: the cached base run step for step; zero: each block ends at its first forward."""
    same_decoding(run(model, prompts, "confidence", block_length=8, cache=cache, early_commit=hook,
                      **UNREACHABLE[hook]),
                  run(model, prompts, "confidence", block_length=8, cache=cache))
    result = run(model, prompts, hook, block_length=8, cache=cache, **IMMEDIATE[hook])
    assert result.nfe == G // 8 and not (result.canvas == MASK).any()


def test_prophet_answer_region_and_forced_anchor(models, prompts):
    llada = models["llada"]
    result = run(llada, prompts, "prophet", block_length=8, answer_start=20, answer_length=4, anchor=(11, 12, 13))
    assert (result.canvas[:, 17:20] == torch.tensor([11, 12, 13])).all(), "the anchor is forced before the answer"
    assert (result.trace.commit_step[:, 17:20] == -1).all()
    assert not (result.canvas == MASK).any()


def test_schedules_fall_from_high_to_low():
    from dllm_decode.samplers.sched import SchED

    for schedule in ("linear", "cosine", "exponential"):
        rule = SchED(tau_high=7.5, tau_low=0.0, schedule=schedule, k=16.0)
        values = [rule.threshold(p / 10) for p in range(11)]
        assert values[0] == pytest.approx(7.5) and all(a >= b for a, b in zip(values, values[1:]))
        assert values[-1] == pytest.approx(0.0, abs=1e-5)


def test_early_commit_progress_uses_the_step_budget(models, prompts):
    sampler = Sampler("prophet", gen_length=G, block_length=8, steps=8)
    assert sampler.plan.total_steps(G) == 8
    assert Sampler("threshold", gen_length=G, early_commit="sched").plan.total_steps(G) == G


# --- AdaBlock -------------------------------------------------------------------------------------------------

def test_adablock_above_one_equals_fixed_blocks(model, prompts):
    fixed = run(model, prompts, "threshold", block_length=8, threshold=0.15)
    adaptive = run(model, prompts, "adablock", threshold=0.15, delimiter_threshold=1.5, default_block_length=8,
                   delimiter_ids=(3, 17))
    same_decoding(adaptive, fixed)


def test_adablock_ends_the_block_at_a_confident_delimiter():
    state = new_state([torch.tensor([1, 2])], G, 8, 0, MASK, False)
    state.block_state = Delimiters(torch.tensor([5]))
    logits = torch.zeros(1, G, 10)
    logits[0, 3, 5] = 4.0  # a confident delimiter 3 columns after the block start
    logits[0, 6, 5] = 1.0  # a weaker one further on
    schedule = AdaBlock(delimiter_threshold=0.3, default_block_length=16)
    cols = torch.arange(G)[None]
    schedule.start(state, torch.tensor([True]), logits, None, cols)
    assert state.block_end.tolist() == [4]
    AdaBlock(delimiter_threshold=0.99, default_block_length=16).start(state, torch.tensor([True]), logits, None, cols)
    assert state.block_end.tolist() == [16], "below the threshold the block has its default length"


def test_adablock_runs_with_credit_and_sched(model, prompts):
    sampler = Sampler("creditdecoding", gen_length=G, blocks="adaptive", early_commit="sched", threshold=0.2,
                      delimiter_ids=(3,), delimiter_threshold=0.05, trace=True)
    config = sampler.config
    assert config["blocks"] == "adaptive" and config["block_length"] is None
    assert {"alpha", "delimiter_threshold", "tau_high", "schedule"} <= set(config)
    result = sampler.generate(model, prompts)
    assert not (result.canvas == MASK).any()


def test_delimiters_resolve_from_strings_and_ids():
    from dllm_decode.zoo.tokenizer import build_tokenizer

    tok = build_tokenizer()
    assert resolve_delimiters((",", 7), tok) == [tok.convert_tokens_to_ids(","), 7]
    with pytest.raises(ValueError, match="not in its vocabulary"):
        resolve_delimiters(None, tok)
    with pytest.raises(ValueError, match="must be token ids when the model has no tokenizer"):
        resolve_delimiters((",",), None)


# --- End-of-text fill -----------------------------------------------------------------------------------------

def first_eos(row: torch.Tensor) -> int:
    hits = (row == EOS).nonzero()
    return int(hits[0]) if len(hits) else row.numel()


@pytest.mark.parametrize("fill", [True, "block"])
@pytest.mark.parametrize("name,opts", [("threshold", dict(block_length=8, threshold=0.15)),
                                       ("confidence", dict(block_length=8)),
                                       ("prophet", dict(block_length=8, **UNREACHABLE["prophet"])),
                                       ("sched", dict(block_length=8, **UNREACHABLE["sched"]))])
def test_eos_fill_never_changes_tokens_before_the_first_eos(eos_model, prompts, fill, name, opts):
    plain = run(eos_model, prompts, name, **opts)
    filled = run(eos_model, prompts, name, eos_fill=fill, **opts)
    ends = [first_eos(filled.canvas[row]) for row in range(prompts.shape[0])]
    assert min(ends) < G, "the test model must produce an EOS"
    for row, end in enumerate(ends):  # a row without EOS was never filled: it equals the plain run
        assert torch.equal(filled.canvas[row, :end + 1], plain.canvas[row, :end + 1])
        after, before_fill = filled.canvas[row, end:], plain.canvas[row, end:]
        assert ((after == EOS) | (after == before_fill)).all(), "the fill only writes EOS into masks"
    assert filled.nfe <= plain.nfe


def test_eos_fill_with_all_in_commit(eos_model, prompts):
    result = run(eos_model, prompts, "sched", block_length=8, eos_fill=True, **IMMEDIATE["sched"])
    assert result.nfe == 1 and not (result.canvas == MASK).any()


# --- Batches --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,opts", [("creditdecoding", dict(block_length=8, threshold=0.2)),
                                       ("localleap", dict(block_length=8, threshold=0.2, relaxed_threshold=0.1)),
                                       ("adablock", dict(threshold=0.2, delimiter_ids=(3,), delimiter_threshold=0.1,
                                                         default_block_length=8)),
                                       ("sched", dict(block_length=8, tau_low=0.5))])
def test_rows_decode_independently(models, name, opts):
    llada = models["llada"]
    g = torch.Generator().manual_seed(2)
    ragged = [torch.randint(0, 90, (n,), generator=g) for n in (4, 9)]
    sampler = Sampler(name, gen_length=G, **opts)
    batched = sampler.generate(llada, ragged)
    for row, prompt in enumerate(ragged):
        alone = sampler.generate(llada, prompt)
        assert torch.equal(batched.canvas[row], alone.canvas[0])
        assert batched.row_nfe[row] == alone.nfe


# --- Validation: every message is triggered -------------------------------------------------------------------

@pytest.mark.parametrize("name,opts,message", [
    ("creditdecoding", dict(alpha=-1.0), "`alpha` must be a number >= 0"),
    ("creditdecoding", dict(beta=0.0), r"`beta` must be a number in \(0, 1\]"),
    ("creditdecoding", dict(threshold=1.5), r"`threshold` must be a number in \(0, 1\], got 1.5"),
    ("creditdecoding", dict(slots=0), "`slots` must be an int >= 1"),
    ("localleap", dict(relaxed_threshold=0.95), "`relaxed_threshold` must be <= `threshold`"),
    ("localleap", dict(radius=-1), "`radius` must be an int >= 0"),
    ("prophet", dict(early=-1.0), "`early` must be a number >= 0"),
    ("prophet", dict(answer_start=30, answer_length=5), r"`answer_start` \+ `answer_length` must be <= `gen_length`"),
    ("prophet", dict(answer_length=3), "`answer_length` needs `answer_start`"),
    ("prophet", dict(answer_start=-2), "`answer_start` must be None"),
    ("prophet", dict(answer_start=2, anchor=(1, 2, 3)), "must fit before `answer_start`"),
    ("prophet", dict(answer_start=5, anchor=()), "`anchor` must be None, a string"),
    ("sched", dict(tau_high=1.0, tau_low=2.0), "`tau_high` must be >= `tau_low`"),
    ("sched", dict(schedule="step"), "`schedule` must be one of"),
    ("sched", dict(k=8.0), "`k` only shapes `schedule='exponential'`"),
    ("sched", dict(schedule="exponential", k=0), "`k` must be a number > 0"),
    ("adablock", dict(block_length=8), "`block_length` has no effect with `blocks='adaptive'`"),
    ("confidence", dict(blocks="adaptive"), "variable block lengths, so a step-budget rule"),
    ("adablock", dict(delimiter_threshold=-0.1), "`delimiter_threshold` must be a number >= 0"),
    ("adablock", dict(default_block_length=0), "`default_block_length` must be an int >= 1"),
    ("adablock", dict(delimiter_ids=()), "`delimiter_ids` must be None"),
    ("threshold", dict(eos_fill="yes"), "`eos_fill` must be False, True"),
    ("threshold", dict(early_commit="oracle"), "`early_commit` must be one of"),
])
def test_invalid_options_raise(name, opts, message):
    with pytest.raises(ValueError, match=message):
        Sampler(name, gen_length=G, **opts)


def test_prophet_text_anchor_needs_a_tokenizer(models, prompts):
    with pytest.raises(ValueError, match="the model has no tokenizer"):
        Sampler("prophet", gen_length=G, answer_start=10, anchor="The answer is").generate(models["llada"], prompts)


def test_credit_rejects_loops_without_its_state():
    from dllm_decode.plan import LOOPS

    assert "ssd" in LOOPS  # the speculative loops register when `Sampler` is imported
    with pytest.raises(ValueError, match="`rule='creditdecoding'` cannot work with a loop that spends its forwards its own way"):  # ssd takes no option deer would need
        Sampler("creditdecoding", gen_length=G, loop="ssd")

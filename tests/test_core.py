"""The loop, the baseline commit rules and the Sampler API, checked against their published rules."""
from __future__ import annotations

import pytest
import torch

from dllm_decode import Sampler, available_samplers, register, wrap
from dllm_decode.samplers.threshold import Threshold

from .conftest import EOS, MASK, tiny_llada_module

BASELINES = ["confidence", "random", "origin", "maskgit_plus", "topk_margin", "entropy", "threshold", "fastdllm",
             "factor", "entropy_threshold"]


def test_registered_baselines():
    assert set(BASELINES) <= set(available_samplers())


@pytest.mark.parametrize("name,opts", [
    ("confidence", {"block_length": 8}), ("confidence", {"block_length": 8, "steps": 8}),
    ("threshold", {"block_length": 8, "threshold": 0.3}), ("factor", {"block_length": 8, "factor": 1.0}),
    ("entropy_threshold", {"block_length": 8, "entropy_threshold": 2.0}), ("maskgit_plus", {"steps": 8}),
    ("topk_margin", {"steps": 16}), ("entropy", {"steps": 16}),
])
def test_batched_ragged_prompts_equal_one_at_a_time(any_model, ragged_prompts, name, opts):
    sampler = Sampler(name, gen_length=32, **opts)
    batched = sampler.generate(any_model, ragged_prompts)
    for row, prompt in enumerate(ragged_prompts):
        alone = sampler.generate(any_model, prompt)
        assert torch.equal(batched.canvas[row], alone.canvas[0]), f"row {row} depends on its neighbours"
        assert batched.row_nfe[row] == alone.nfe


def test_threshold_one_equals_one_token_per_step(any_model, ragged_prompts):
    stepwise = Sampler("confidence", gen_length=32, block_length=8).generate(any_model, ragged_prompts)
    tau_one = Sampler("threshold", gen_length=32, block_length=8, threshold=1.0).generate(any_model, ragged_prompts)
    assert torch.equal(stepwise.canvas, tau_one.canvas)
    assert stepwise.nfe == tau_one.nfe == 32


def confidences(model, state_x, prompt_width):
    logits = model(state_x)[:, prompt_width:]
    probs = logits.float().softmax(-1)
    return probs.max(-1)


def test_confidence_commits_one_token_per_step_in_confidence_order(llada):
    prompt = torch.randint(0, 90, (1, 6))
    result = Sampler("confidence", gen_length=16, block_length=8, trace=True).generate(llada, prompt)
    steps = result.trace.commit_step[0]
    assert sorted(steps.tolist()) == list(range(16)), "exactly one commit per step"
    canvas = torch.full((1, 16), MASK)
    for step, after in enumerate(result.trace.history):
        conf, x0 = confidences(llada, torch.cat([prompt, canvas], 1), prompt.shape[1])
        block = 0 if step < 8 else 8
        eligible = torch.zeros(16, dtype=torch.bool)
        eligible[block:block + 8] = canvas[0, block:block + 8] == MASK
        best = conf[0].masked_fill(~eligible, -1).argmax()
        assert steps[best] == step and after[0, best] == x0[0, best]
        canvas = after.clone()
    assert torch.equal(canvas, result.canvas)


def test_llada_step_schedule_splits_masks_evenly(llada):
    r = Sampler("confidence", gen_length=16, block_length=8, steps=6, trace=True).generate(llada, [torch.arange(5)])
    per_step = torch.bincount(r.trace.commit_step[0], minlength=6).tolist()
    assert per_step == [3, 3, 2, 3, 3, 2]  # 8 masks over 3 steps: 3, 3, 2 per block


def test_dream_schedule_finishes_in_its_step_budget(dream):
    r = Sampler("maskgit_plus", gen_length=32, steps=8).generate(dream, [torch.arange(5)])
    assert r.nfe == 8 and (r.canvas != MASK).all()


@pytest.mark.parametrize("steps", [8, 32])
def test_dream_schedule_is_the_published_count(dream, steps):
    """Dream's `diffusion_generate`: step i commits int(n * (1 - s / t)) of the n masks left, t, s consecutive
    points of linspace(1, 1e-3, steps + 1) (float32 there), every mask left at the last step. At steps = n the
    first count is int((1 - 1e-3) n / steps) = 0 and the last is 2: the published schedule, not an off-by-one."""
    grid, left, expected = torch.linspace(1, 1e-3, steps + 1), 32, []
    for i in range(steps):  # an independent statement of the published rule
        expected.append(left if i == steps - 1 else int(left * (1 - grid[i + 1] / grid[i])))
        left -= expected[-1]
    r = Sampler("maskgit_plus", gen_length=32, steps=steps, trace=True).generate(dream, [torch.arange(5)])
    assert torch.bincount(r.trace.commit_step[0], minlength=steps).tolist() == expected
    assert steps != 32 or (expected[0], expected[-1]) == (0, 2)


def test_gumbel_sampling_is_reproducible_with_a_seed(llada, ragged_prompts):
    hot = dict(gen_length=32, block_length=8, temperature=1.0)
    a = Sampler("confidence", seed=7, **hot).generate(llada, ragged_prompts)
    b = Sampler("confidence", seed=7, **hot).generate(llada, ragged_prompts)
    c = Sampler("confidence", seed=8, **hot).generate(llada, ragged_prompts)
    greedy = Sampler("confidence", gen_length=32, block_length=8).generate(llada, ragged_prompts)
    assert torch.equal(a.canvas, b.canvas)
    assert not torch.equal(a.canvas, c.canvas) and not torch.equal(a.canvas, greedy.canvas)


def test_random_remasking_differs_from_low_confidence(llada, ragged_prompts):
    low = Sampler("confidence", gen_length=32, block_length=8).generate(llada, ragged_prompts)
    rnd = Sampler("random", gen_length=32, block_length=8, seed=0).generate(llada, ragged_prompts)
    assert not torch.equal(low.canvas, rnd.canvas)


def test_threshold_commits_several_tokens_when_confident(llada, ragged_prompts):
    r = Sampler("threshold", gen_length=32, block_length=8, threshold=0.3).generate(llada, ragged_prompts)
    assert 4 < r.nfe < 32 and r.tokens_per_forward > 1 and (r.canvas != MASK).all()


def test_factor_commits_the_passing_prefix_and_legacy_one_more(llada, ragged_prompts):
    clean = Sampler("factor", gen_length=32, block_length=8, factor=1.0).generate(llada, ragged_prompts)
    legacy = Sampler("factor", gen_length=32, block_length=8, factor=1.0, legacy=True).generate(llada, ragged_prompts)
    assert legacy.nfe < clean.nfe  # the quirk commits a failing rank every step


def eos_biased(bias: float = 5.0):
    """A random LLaDA whose head favours EOS, so that EOS controls have something to act on."""
    module = tiny_llada_module(seed=3, include_bias=True)
    with torch.no_grad():
        module.model.transformer["ff_out"].bias[EOS] = bias
    return wrap(module, mask_id=MASK, eos_ids=(EOS,))


def test_logits_eos_inf_never_emits_eos():
    model = eos_biased()
    plain = Sampler("confidence", gen_length=16, block_length=8).generate(model, [torch.arange(4)])
    banned = Sampler("confidence", gen_length=16, block_length=8, logits_eos_inf=True).generate(model, [torch.arange(4)])
    assert (plain.canvas == EOS).any() and not (banned.canvas == EOS).any()
    assert plain.gen_tokens[0] < 16 and banned.gen_tokens[0] == 16


def test_confidence_eos_eot_inf_commits_eos_last():
    model = eos_biased()
    r = Sampler("confidence", gen_length=8, block_length=8, confidence_eos_eot_inf=True, trace=True).generate(
        model, [torch.arange(4)])
    eos_steps = r.trace.commit_step[0][r.canvas[0] == EOS]
    other_steps = r.trace.commit_step[0][r.canvas[0] != EOS]
    assert eos_steps.numel() and (eos_steps.min() > other_steps.max())


def test_cfg_runs_one_batched_forward_per_step(llada):
    plain = Sampler("confidence", gen_length=16, block_length=8).generate(llada, [torch.arange(6)])
    guided = Sampler("confidence", gen_length=16, block_length=8, cfg_scale=1.5).generate(llada, [torch.arange(6)])
    assert guided.nfe == plain.nfe == 16 and not torch.equal(guided.canvas, plain.canvas)


def test_eos_fill_stops_after_a_settled_eos():
    model = eos_biased()
    plain = Sampler("confidence", gen_length=32, block_length=4).generate(model, [torch.arange(4)])
    filled = Sampler("confidence", gen_length=32, block_length=4, eos_fill=True).generate(model, [torch.arange(4)])
    first = plain.gen_tokens[0]
    assert first < 28, "fixture must emit an early EOS"
    assert torch.equal(filled.canvas[0, :first], plain.canvas[0, :first])
    assert (filled.canvas[0, first:] == EOS).all() and filled.nfe < plain.nfe


def test_accounting(llada, ragged_prompts):
    r = Sampler("threshold", gen_length=32, block_length=8, threshold=0.3).generate(llada, ragged_prompts)
    assert r.canvas.shape == (3, 32) and len(r.ids) == 3
    assert r.nfe == max(r.row_nfe) and r.steps == r.nfe
    assert r.tokens_per_forward == pytest.approx(sum(r.gen_tokens) / sum(r.row_nfe))
    assert r.tokens_per_step == pytest.approx(sum(32 / n for n in r.row_nfe) / 3)
    assert r.wall_time > 0 and r.text is None


def test_user_registered_rule():
    class Eager(Threshold):
        pass

    register("eager_test", Eager, rule_defaults={"threshold": 0.5})
    assert Sampler("eager_test").config["threshold"] == 0.5
    with pytest.raises(ValueError, match="already registered"):
        register("eager_test", Eager)
    with pytest.raises(ValueError, match="does not take"):
        register("eager_bad", Eager, rule_defaults={"alpha": 1})


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "nope"}, "must be one of"),
    ({"name": "threshold", "thresh": 0.5}, r"unknown option\(s\) \['thresh'\]"),
    ({"name": "threshold", "threshold": 1.5}, r"`threshold` must be a number in \(0, 1\], got 1.5"),
    ({"name": "threshold", "threshold": 0.0}, r"`threshold` must be a number in \(0, 1\], got 0.0"),
    ({"name": "confidence", "gen_length": 64, "block_length": 24}, "`block_length` must divide `gen_length` \\(64\\)"),
    ({"name": "confidence", "gen_length": 64, "block_length": 32, "steps": 3}, "multiple of the number of blocks"),
    ({"name": "threshold", "steps": 64}, "`steps` is not used by 'threshold'"),
    ({"name": "confidence", "remasking": "lowest"}, "`remasking` must be one of"),
    ({"name": "maskgit_plus", "alg": "x"}, "`alg` must be one of"),
    ({"name": "factor", "factor": -1}, "`factor` must be a number > 0"),
    ({"name": "confidence", "temperature": -0.1}, "`temperature` must be a number >= 0"),
    ({"name": "confidence", "gen_length": 0}, "`gen_length` must be an int >= 1"),
    ({"name": "confidence", "cache": "magic"}, "`cache` must be one of"),
    ({"name": "confidence", "attention": "magic"}, "`attention` must be one of"),
    ({"name": "confidence", "blocks": "magic"}, "`blocks` must be one of"),
])
def test_bad_options_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler(**kwargs)


def test_bad_prompts_raise_at_generate(llada):
    sampler = Sampler("confidence", gen_length=32, block_length=8)
    with pytest.raises(ValueError, match="must not be empty"):
        sampler.generate(llada, torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="context 256"):
        sampler.generate(llada, torch.zeros(240, dtype=torch.long))
    with pytest.raises(ValueError, match="no tokenizer"):
        sampler.generate(llada, "hello")
    with pytest.raises(ValueError, match="DiffusionLM"):
        sampler.generate(llada.module, torch.arange(4))
    with pytest.raises(ValueError, match="integer ids"):
        sampler.generate(llada, torch.zeros(3))


def test_config_shows_every_resolved_option(llada):
    cfg = Sampler("fastdllm", gen_length=64).config
    assert cfg["sampler"] == "threshold" and cfg["threshold"] == 0.9
    assert cfg["block_length"] == "auto" and Sampler("fastdllm").config["gen_length"] == "auto"  # model-dependent
    assert Sampler("fastdllm", gen_length=64).fit(llada, 5).config["block_length"] == 32
    assert Sampler("confidence", gen_length=64, block_length=32).config["steps"] == 64
    assert Sampler("maskgit_plus", gen_length=64).fit(llada, 5).config["block_length"] == 64  # Dream: one block


class HeadColumns:
    """Records how many canvas columns the LM head ran on at each forward (logits_for's width)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.widths: list[int] = []
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        if kwargs.get("logits_for") is not None:
            self.widths.append(kwargs["logits_for"].shape[1])


@pytest.mark.parametrize("name,opts", [
    ("confidence", {}), ("threshold", {"threshold": 0.5}), ("factor", {}), ("entropy_threshold", {}),
    ("creditdecoding", {}), ("localleap", {"threshold": 0.7, "relaxed_threshold": 0.4}), ("confidence", {"cache": "dual"}),
    ("threshold", {"threshold": 0.5, "cache": "prefix"}), ("confidence", {"cache": "windowed"}),
])
def test_head_on_masked_columns_only_changes_no_token(any_model, ragged_prompts, monkeypatch, name, opts):
    """The loop runs the head only on the block's masked columns; a rule that reads every block column
    (masked_only=False) must get the same tokens with one full block of head columns per forward."""
    sampler = Sampler(name, gen_length=16, block_length=8, **opts)
    seen = HeadColumns(any_model.module)
    compact = sampler.generate(any_model, ragged_prompts)
    compact_widths, seen.widths = seen.widths, []
    monkeypatch.setattr(type(sampler.rule), "masked_only", False)
    full = sampler.generate(any_model, ragged_prompts)
    seen.handle.remove()
    assert torch.equal(compact.canvas, full.canvas) and compact.nfe == full.nfe
    assert set(seen.widths) == {8} and max(compact_widths) <= 8 and min(compact_widths) < 8


def test_words_outside_the_vocabulary_warn_at_the_callers_line():
    import warnings

    from dllm_decode import load_model
    model = load_model("tiny-llada")
    sampler = Sampler("threshold", gen_length=32)
    with pytest.warns(UserWarning, match="5 token\\(s\\) .* outside the vocabulary") as caught:
        sampler.generate(model, "reverse [ Ann Lee , Bob Ray , Cid Poe ]")  # Ann, Bob, Ray, Cid, Poe: unknown
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names of the task suite: no warning
        sampler.generate(model, "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]")

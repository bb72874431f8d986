"""EB-sampler on masked models: equal to a plain-loop statement of the rule, composes with blocks, caches,
early commit and ragged batches."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical

from dllm_decode import Sampler, wrap
from dllm_decode.samplers.base import StepInput, TokenOptions
from dllm_decode.samplers.eb import EntropyBound, entropy_bound_commit, token_entropy

from .conftest import EOS, MASK, tiny_dream_module, tiny_llada_module
from .test_policies import sharpened

G, BLOCK = 32, 8


@pytest.fixture(scope="module")
def peaked_models():
    """Sharpened heads: entropies spread from ~1e-7 to ~1 nat, so bounds in that range commit several tokens."""
    llada = sharpened(tiny_llada_module(), "model.transformer.ff_out.weight")
    dream = sharpened(tiny_dream_module(), "lm_head.weight", scale=14.0)
    return {"llada": wrap(llada, mask_id=MASK, eos_ids=(EOS,)), "dream": wrap(dream, mask_id=MASK, eos_ids=(EOS,))}


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(5)
    return [torch.randint(0, 90, (n,), generator=g) for n in (7, 4)]


def reference_eb(model, prompt, bound: float) -> tuple[torch.Tensor, int]:
    """The rule as the paper states it, one position at a time: within each block, while masks remain, sort the
    masks by entropy (ties by column), add positions while sum(H) - max(H) of the chosen set stays <= bound."""
    P = prompt.numel()
    x = torch.cat([prompt, torch.full((G,), MASK)])
    nfe = 0
    for start in range(P, P + G, BLOCK):
        while True:
            masked = [i for i in range(start, start + BLOCK) if x[i] == MASK]
            if not masked:
                break
            logits = model(x[None])[0]
            nfe += 1
            entropy = {i: float(Categorical(logits=logits[i].float()).entropy()) for i in masked}
            order = sorted(masked, key=lambda i: (entropy[i], i))
            chosen = [order[0]]
            for i in order[1:]:
                candidate = [entropy[j] for j in chosen + [i]]
                if sum(candidate) - max(candidate) > bound:
                    break
                chosen.append(i)
            for i in chosen:
                x[i] = logits[i].argmax()
    return x[P:], nfe


@pytest.mark.parametrize("bound", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("name", ["llada", "dream"])
def test_eb_equals_the_reference_rule(peaked_models, prompts, name, bound):
    model = peaked_models[name]
    sampler = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=bound)
    for prompt in prompts:
        result = sampler.generate(model, prompt)
        canvas, nfe = reference_eb(model, prompt, bound)
        assert torch.equal(result.canvas[0], canvas)
        assert result.nfe == nfe


def test_larger_bounds_commit_more_per_step(peaked_models, prompts):
    nfe = [Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=b).generate(peaked_models["llada"],
                                                                                    prompts[0]).nfe
           for b in (0.0, 0.01, 0.1, 1.0)]
    assert nfe[0] == G and nfe == sorted(nfe, reverse=True) and nfe[-1] < nfe[1], nfe


def test_bound_zero_commits_one_token_per_step_in_entropy_order(any_model, prompts):
    """With no exactly one-hot prediction (the unsharpened fixtures), gamma = 0 admits only the first position."""
    result = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.0, trace=True).generate(any_model,
                                                                                                   prompts[0])
    assert result.nfe == G
    assert torch.equal(result.trace.commit_step[0].sort().values, torch.arange(G))
    canvas, nfe = reference_eb(any_model, prompts[0], 0.0)
    assert torch.equal(result.canvas[0], canvas) and nfe == G


def test_ragged_batch_equals_one_at_a_time(peaked_models, prompts):
    sampler = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.5)
    model = peaked_models["dream"]
    batched = sampler.generate(model, prompts)
    for row, prompt in enumerate(prompts):
        alone = sampler.generate(model, prompt)
        assert torch.equal(batched.canvas[row], alone.canvas[0])
        assert batched.row_nfe[row] == alone.nfe


def test_dual_cache_at_refresh_one_equals_no_cache_and_default_dual_runs(peaked_models, prompts):
    model = peaked_models["llada"]
    plain = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.5).generate(model, prompts)
    exact = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.5, cache="dual", refresh=1)
    assert torch.equal(exact.generate(model, prompts).canvas, plain.canvas)
    cached = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.5, cache="dual").generate(model, prompts)
    assert not (cached.canvas == MASK).any() and cached.nfe <= G


def test_early_commit_and_eos_fill_run(peaked_models, prompts):
    model = peaked_models["llada"]
    base = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.01).generate(model, prompts)
    early = Sampler("eb", gen_length=G, block_length=BLOCK, entropy_bound=0.01, early_commit="sched",
                    eos_fill=True).generate(model, prompts)
    assert not (early.canvas == MASK).any()
    assert early.nfe <= base.nfe


def test_commit_on_hand_built_entropies():
    entropy = torch.tensor([[0.3, 0.0, 0.2, 5.0, 0.1, 0.2],
                            [2.0, 1.0, 3.0, 0.5, 0.5, 0.5]])
    eligible = torch.tensor([[True, True, True, True, False, True],
                             [True, True, True, False, False, False]])
    # row 0 sorted eligible: 0.0 (c1), 0.2 (c2), 0.2 (c5), 0.3 (c0), 5.0 (c3); prefix excess 0, 0, .2, .4, .7
    got = entropy_bound_commit(entropy, eligible, 0.2)
    assert got[0].tolist() == [False, True, True, False, False, True]
    assert got[1].tolist() == [False, True, False, False, False, False]  # at least one, the lowest eligible
    assert not entropy_bound_commit(entropy, torch.zeros_like(eligible), 9.0).any()


def test_token_entropy_is_categoricals_bit_for_bit():
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(0)) * 4
    logits[0, 0, 7] = float("-inf")
    assert torch.equal(token_entropy(logits), Categorical(logits=logits).entropy())


def step_input(logits, eligible, **tokens):
    B = logits.shape[0]
    zeros = torch.zeros(B, dtype=torch.long)
    return StepInput(logits, eligible, torch.arange(logits.shape[1]).expand(B, -1), zeros, zeros, None,
                     torch.tensor([EOS]), None, TokenOptions(**tokens))


def test_eos_options():
    """A near-certain EOS prediction ranks last under `confidence_eos_eot_inf` and vanishes under `logits_eos_inf`."""
    logits = torch.zeros(1, 3, 100)
    logits[0, 0, EOS] = 30.0  # entropy ~0, predicts EOS
    logits[0, 1, 5] = 8.0
    logits[0, 2, 6] = 8.0
    eligible = torch.ones(1, 3, dtype=torch.bool)
    rule = EntropyBound(entropy_bound=1.0)
    assert rule.commit(step_input(logits, eligible)).commit.tolist() == [[True, True, True]]
    ranked_last = rule.commit(step_input(logits, eligible, confidence_eos_eot_inf=True))
    assert ranked_last.commit.tolist() == [[False, True, True]]
    only_eos = rule.commit(step_input(logits[:, :1], eligible[:, :1], confidence_eos_eot_inf=True))
    assert only_eos.commit.tolist() == [[True]] and only_eos.tokens.tolist() == [[EOS]]
    forbidden = rule.commit(step_input(logits, eligible, logits_eos_inf=True))
    assert not (forbidden.tokens == EOS).any()


@pytest.mark.parametrize("value", [-0.1, "0.1", True, float("nan")])
def test_bad_bound_raises(value):
    with pytest.raises(ValueError, match="`entropy_bound` must be a number >= 0"):
        Sampler("eb", gen_length=G, entropy_bound=value)

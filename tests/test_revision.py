"""The revision axis: WINO and LLaDA2.1 token editing equal their authors' rules, stated here one position at
a time; budgets, accounting, caches and errors.

References, written in our own words from the public code (not copied):
- WINO: `decoding_wino` in github.com/Feng-Hong/WINO-DLLM (LLaDA/decoding.py): one forward per step over
  the sequence plus a shadow copy of the block (all masks, the block's positions) whose rows see every
  token except their own column; wide-in threshold commits capped at min(max(int(0.7 m), 5), 20); when a
  step commits more than one token, tokens of the block whose shadow probability is < threshold_back are
  re-masked, only the k - 1 least confident when at least k (the previous step's commits) fail.
- LLaDA2.1: SGLang's `JointThreshold` (python/sglang/srt/dllm/algorithm/joint_threshold.py), per block:
  mask-to-token above `threshold` (at least one) plus token-to-token edits of tokens generated in the
  block whose argmax changed with p > `edit_threshold`; after the last mask, post-edit steps until a
  step changes nothing or `max_post_edit_steps` of them have passed.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dllm_decode import Sampler, load_model, wrap
from dllm_decode.models.sdar import with_block_size

from .conftest import EOS, MASK, tiny_dream_module, tiny_llada_module
from .test_policies import sharpened

G, BLOCK = 32, 8
PUBLISHED = Path(__file__).parent / "fixtures" / "published"


@pytest.fixture(scope="module")
def models():
    """Sharpened heads, so confidences spread over (0, 1] and both thresholds and re-masks are exercised."""
    llada = sharpened(tiny_llada_module(), "model.transformer.ff_out.weight", scale=3.0)
    dream = sharpened(tiny_dream_module(), "lm_head.weight", scale=5.0)
    return {"llada": wrap(llada, mask_id=MASK, eos_ids=(EOS,)), "dream": wrap(dream, mask_id=MASK, eos_ids=(EOS,))}


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(11)
    return [torch.randint(0, 90, (n,), generator=g) for n in (6, 9, 3)]


def reference_wino(model, prompt, threshold: float, threshold_back: float) -> tuple[torch.Tensor, int, int]:
    """WINO as the authors' loop runs it (batch of one): (canvas, forwards, re-masks)."""
    P, S = prompt.numel(), prompt.numel() + G
    x = torch.cat([prompt, torch.full((G + BLOCK,), MASK)])
    nfe = remasks = 0
    for lo in range(P, S, BLOCK):
        hi = lo + BLOCK
        positions = torch.cat([torch.arange(S), torch.arange(lo, hi)])
        seen = torch.ones(S + BLOCK, S + BLOCK, dtype=torch.bool)
        seen[:, S:] = False  # nobody sees the shadow copy ...
        seen[S:, S:] = True  # ... but the shadow copy itself
        seen[S:, lo:hi] = ~torch.eye(BLOCK, dtype=torch.bool)  # shadow row j: every block column but its own
        previous = 30
        while (x[lo:hi] == MASK).any():
            masked = [i for i in range(lo, hi) if x[i] == MASK]
            drafted = [i for i in range(lo, hi) if x[i] != MASK]
            cap = min(max(int(len(masked) * 0.7), 5), 20)
            logits = model(x[None], positions=positions[None], attention_mask=seen[None, None])[0]
            nfe += 1
            p = torch.softmax(logits.double(), dim=-1)
            x0 = logits.argmax(-1)
            conf = {i: float(p[i, x0[i]]) for i in masked}
            accepted = [i for i in masked if conf[i] > threshold]
            if len(accepted) > cap:
                accepted = sorted(masked, key=lambda i: -conf[i])[:cap]
            elif not accepted:
                accepted = [max(masked, key=lambda i: conf[i])]
            back = {i: float(p[S + i - lo, x[i]]) for i in drafted}
            remask = []
            if len(accepted) > 1:
                remask = [i for i in drafted if back[i] < threshold_back]
                if len(remask) >= previous:
                    remask = sorted(drafted, key=lambda i: back[i])[:previous - 1]
            for i in accepted:
                x[i] = x0[i]
            for i in remask:
                x[i] = MASK
            remasks += len(remask)
            previous = len(accepted)
    return x[P:S], nfe, remasks


def reference_editing(model, prompt, threshold: float, edit_threshold: float,
                      max_post: int) -> tuple[torch.Tensor, int, int]:
    """SGLang's JointThreshold block by block (batch of one): (canvas, forwards, edits)."""
    P = prompt.numel()
    x = torch.cat([prompt, torch.full((G,), MASK)])
    nfe = edits = 0
    for lo in range(P, P + G, BLOCK):
        post = 0
        while True:
            logits = model(x[None])[0]
            nfe += 1
            x0 = logits.argmax(-1)
            p = torch.softmax(logits.float(), dim=-1).gather(-1, x0[:, None]).squeeze(-1)
            masked = [i for i in range(lo, lo + BLOCK) if x[i] == MASK]
            fill = []
            if masked:
                fill = [i for i in masked if p[i] > threshold] or [max(masked, key=lambda i: float(p[i]))]
            else:
                post += 1
                if post > max_post:
                    break
            edit = [i for i in range(lo, lo + BLOCK) if x[i] != MASK and x[i] != x0[i] and p[i] > edit_threshold]
            if not fill and not edit:
                break
            for i in fill + edit:
                x[i] = x0[i]
            edits += len(edit)
    return x[P:], nfe, edits


@pytest.mark.parametrize("threshold,threshold_back", [(0.6, 0.9), (0.3, 0.95), (0.8, 0.5)])
def test_wino_equals_the_authors_rule(models, prompts, threshold, threshold_back):
    sampler = Sampler("wino", gen_length=G, block_length=BLOCK, threshold=threshold, threshold_back=threshold_back)
    total = 0
    for prompt in prompts:
        result = sampler.generate(models["llada"], prompt)
        canvas, nfe, remasks = reference_wino(models["llada"], prompt, threshold, threshold_back)
        assert torch.equal(result.canvas[0], canvas)
        assert (result.nfe, result.loop_stats["revisions"]) == (nfe, remasks)
        total += remasks
    assert total > 0  # the narrow-out step was exercised


@pytest.mark.parametrize("name", ["llada", "dream"])
@pytest.mark.parametrize("threshold,edit_threshold,max_post", [(0.5, 0.0, 16), (0.7, 0.5, 2), (0.9, 0.3, 0)])
def test_editing_equals_sglangs_joint_threshold(models, prompts, name, threshold, edit_threshold, max_post):
    sampler = Sampler("llada21", gen_length=G, block_length=BLOCK, threshold=threshold, edit_threshold=edit_threshold,
                      max_post_edit_steps=max_post)
    total = 0
    for prompt in prompts:
        result = sampler.generate(models[name], prompt)
        canvas, nfe, edits = reference_editing(models[name], prompt, threshold, edit_threshold, max_post)
        assert torch.equal(result.canvas[0], canvas)
        assert (result.nfe, result.loop_stats["revisions"]) == (nfe, edits)
        total += edits
    assert total > 0


@pytest.mark.parametrize("name,options", [("wino", {}), ("llada21", {"max_post_edit_steps": 3})])
def test_a_ragged_batch_equals_one_at_a_time(models, prompts, name, options):
    sampler = Sampler(name, gen_length=G, block_length=BLOCK, **options)
    batch = sampler.generate(models["llada"], prompts)
    for row, prompt in enumerate(prompts):
        alone = sampler.generate(models["llada"], prompt)
        assert torch.equal(batch.canvas[row], alone.canvas[0])
        assert batch.row_nfe[row] == alone.row_nfe[0]
    assert batch.loop_stats["revisions"] == sum(
        sampler.generate(models["llada"], p).loop_stats["revisions"] for p in prompts)


def test_editing_that_never_fires_is_the_strict_threshold_rule_plus_one_forward_per_block(models, prompts):
    """p > 1 never holds: tokens equal the threshold rule; each block ends with one forward that changes nothing."""
    options = dict(gen_length=G, block_length=BLOCK, threshold=0.7)
    for prompt in prompts:
        edited = Sampler("llada21", edit_threshold=1.0, **options).generate(models["llada"], prompt)
        plain = Sampler("threshold", **options).generate(models["llada"], prompt)
        assert torch.equal(edited.canvas, plain.canvas)
        assert edited.nfe == plain.nfe + G // BLOCK and edited.loop_stats["revisions"] == 0


def test_a_zero_budget_makes_wino_its_monotone_draft(models, prompts):
    options = dict(gen_length=G, block_length=BLOCK, threshold=0.3)
    for prompt in prompts:
        budgeted = Sampler("wino", revision_budget=0, threshold_back=0.95, **options).generate(models["llada"], prompt)
        plain = Sampler("wino", revision="none", **options).generate(models["llada"], prompt)
        assert torch.equal(budgeted.canvas, plain.canvas) and budgeted.loop_stats["revisions"] == 0
        assert "revisions" not in plain.loop_stats


def test_the_budget_caps_revisions_and_a_token_counts_once(models, prompts):
    sampler = Sampler("llada21", gen_length=G, block_length=BLOCK, revision_budget=3, trace=True)
    result = sampler.generate(models["llada"], prompts)
    assert result.loop_stats["revisions"] <= 3 * len(prompts)
    assert not (result.canvas == MASK).any()
    stamps = result.trace.commit_step
    assert bool((stamps >= 0).all()) and bool((stamps < result.steps).all())  # the step a token last changed
    assert result.tokens_per_forward == sum(result.gen_tokens) / sum(result.row_nfe)


def test_on_step_shows_re_masks(models, prompts):
    events = []
    Sampler("wino", gen_length=G, block_length=BLOCK, threshold=0.3, threshold_back=0.95).generate(
        models["llada"], prompts[0], on_step=events.append)
    masks = [int((e.canvas == MASK).sum()) for e in events]
    assert any(later > earlier for earlier, later in zip(masks, masks[1:]))  # a step re-masked more than it filled
    assert masks[-1] == 0


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_editing_under_block_caches_equals_no_cache_on_a_block_causal_model(cache):
    """Revisions stay inside the current block, which the prefix and dual caches recompute every step and write
    back when it ends; on a block-causal model (exact caches) the decode is token-identical."""
    model = with_block_size(load_model(PUBLISHED / "llada2"), 4)
    prompts = [torch.tensor([5, 9, 17, 33, 2, 8, 11, 4]), torch.tensor([7, 3, 21, 6])]
    options = dict(gen_length=16, block_length=4, threshold=0.3, edit_threshold=0.0, max_post_edit_steps=4)
    plain = Sampler("llada21", **options).generate(model, prompts)
    cached = Sampler("llada21", cache=cache, **options).generate(model, prompts)
    assert torch.equal(plain.canvas, cached.canvas) and plain.nfe == cached.nfe
    assert plain.loop_stats["revisions"] == cached.loop_stats["revisions"] > 0


def test_the_default_reports_no_revisions(models, prompts):
    result = Sampler("threshold", gen_length=G, block_length=BLOCK).generate(models["llada"], prompts)
    assert "revisions" not in result.loop_stats and Sampler("threshold").config["revision"] == "none"


@pytest.mark.parametrize("options,message", [
    (dict(name="wino", cache="prefix"), "`revision='wino'` needs a cache that recomputes every query row"),
    (dict(name="wino", attention="sparse"), "`revision='wino'` needs an attention backend that computes attention "
                                            "under any key mask"),
    (dict(name="wino", cfg_scale=1.0), "`cfg_scale` must be 0 with revision='wino'"),
    (dict(name="llada21", cache="delayed"), "`revision='editing'` needs a cache that recomputes every row of the "
                                            "current block at every step"),
    (dict(name="llada21", loop="ssd"), "`loop='ssd'` cannot work with a revision rule that takes back tokens"),
    (dict(name="llada21", blocks="adaptive"), "`revision='editing'` needs a block schedule that splits the canvas "
                                              "into equal blocks"),
    (dict(name="llada21", revision_budget=-1), "`revision_budget` must be None (no cap) or an int >= 0"),
    (dict(name="llada21", edit_threshold=1.5), "`edit_threshold` must be a number in [0, 1]"),
    (dict(name="llada21", max_post_edit_steps=-2), "`max_post_edit_steps` must be an int >= 0"),
    (dict(name="wino", threshold_back=0.0), "`threshold_back` must be a number in (0, 1]"),
    (dict(name="wino", threshold=1.5), "`threshold` must be a number in (0, 1]"),
    (dict(name="llada21", threshold=0.0), "`threshold` must be a number in (0, 1]"),
    (dict(name="threshold", revision="undo"), "`revision` must be one of ['editing', 'none', 'wino']"),
    (dict(name="threshold", revision_budget=4), "unknown option(s) ['revision_budget']"),
])
def test_errors(options, message):
    name = options.pop("name")
    with pytest.raises(ValueError) as err:
        Sampler(name, **options)
    assert message in str(err.value)


def test_wino_refuses_a_shifted_model(models, prompts):
    with pytest.raises(ValueError, match="`revision='wino'` needs a model with unshifted logits"):
        Sampler("wino", gen_length=G, block_length=BLOCK).generate(models["dream"], prompts[0])


def test_the_oracle_hides_a_position_by_masking_it():
    """The oracle takes no 4-D mask; its shadow row of column j must be its prediction with column j masked."""
    from dllm_decode.evals.tasks import make_samples
    from dllm_decode.prompts import encode_prompts
    from dllm_decode.revocable import masked_copies
    from dllm_decode.samplers.wino import Wino
    from dllm_decode.state import new_state

    oracle = load_model("oracle")
    sample = make_samples("reverse", per_length=1, lengths=(3,))[0]
    decoded = Sampler("threshold", gen_length=16).generate(oracle, sample.prompt).canvas
    prompts = encode_prompts(oracle, sample.prompt, None)
    state = new_state(prompts, 16, 16, oracle.pad_id, oracle.mask_id, False)
    state.canvas[:, :5] = decoded[:, :5]
    state.canvas[:, 2] = decoded[0, 0]  # an inconsistent token: its hidden-self prediction disagrees with it
    state.revision_state = Wino().new_state(1, state.x.device)
    cols = torch.arange(8)[None]
    logits = masked_copies(oracle, state, cols)
    P = state.prompt_width
    torch.testing.assert_close(logits, oracle(state.x, positions=state.positions, logits_for=cols + P), atol=0, rtol=0)
    for j in range(8):
        hidden = state.x.clone()
        hidden[0, P + j] = oracle.mask_id
        expected = oracle(hidden, positions=state.positions, logits_for=torch.tensor([[P + j]]))[0, 0]
        torch.testing.assert_close(state.revision_state.shadow_logits[0, j], expected, atol=0, rtol=0)
    assert state.revision_state.shadow_logits[0, 2].argmax() != decoded[0, 0]

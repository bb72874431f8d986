"""Published LLaDA2.x, LLaDA-MoE and SDAR checkpoints: held to the authors' logits, decoded by every sampler and cache.

Fixtures (tests/fixtures/published/<name>/: config.json in the published keys, model.safetensors under the
published names, expected.pt = the authors' logits) were built on CPU in fp32 with the authors' modeling
code: LLaDA2.x from inclusionAI's modeling_llada2_moe.py (its gate equals dInfer's LLaDA2MoeGate), LLaDA-MoE
from inclusionAI's modeling_lladamoe.py (routing equal to dInfer's tools/modeling_fused_lladamoe.py), SDAR
from JetAstra/SDAR's training/model/SDAR-4B-Chat/modeling_sdar.py. LLaDA2 and SDAR logits were taken with
the block-causal mask of their `generate` (block 32 and 4, the configs' defaults), LLaDA-MoE with none.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dllm_decode import Sampler, load_model
from dllm_decode.models.llada2 import LLaDA2Config, LLaDA2ModelLM
from dllm_decode.models.llada_moe import LLaDAMoEConfig, LLaDAMoEModelLM
from dllm_decode.models.layers import GatedMLP
from dllm_decode.models.moe import dispatch, group_limited_sigmoid, softmax_top_k
from dllm_decode.models.rotary import rotary_dims
from dllm_decode.models.sdar import SDARForCausalLM, with_block_size
from dllm_decode.samplers.registry import PRESETS

from .test_cache import IDS, STRATEGIES, lockstep

FIXTURES = Path(__file__).parent / "fixtures" / "published"
NAMES = ["llada2", "llada_moe", "sdar"]
MASK, EOS = 127, 126  # the fixtures' tiny vocabulary: 128 ids, the last two special
CLASSES = {"llada2": LLaDA2ModelLM, "llada_moe": LLaDAMoEModelLM, "sdar": SDARForCausalLM}


@pytest.fixture(scope="module", params=NAMES)
def published(request):
    return request.param, load_model(FIXTURES / request.param)


@pytest.fixture(scope="module")
def prompts():
    """Ragged prompts (8 and 4 tokens: whole attention blocks of 4)."""
    return [torch.tensor([5, 9, 17, 33, 2, 8, 11, 4]), torch.tensor([7, 3, 21, 6])]


def test_loads_the_published_format_and_gives_the_authors_logits(published):
    name, model = published
    expected = torch.load(FIXTURES / name / "expected.pt")
    assert type(model.module) is CLASSES[name] and model.shift == 0 and model.mask_id == MASK
    logits = model.module(expected["ids"]).logits  # the config's block size, positions 0..L-1
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)
    # and through the adapter (it only pins the mask logit)
    adapted = model(expected["ids"])
    keep = torch.arange(adapted.shape[-1]) != MASK
    torch.testing.assert_close(adapted[..., keep], expected["logits"][..., keep], atol=1e-4, rtol=0)


def test_llada2_drops_layers_past_num_hidden_layers(tmp_path, caplog):
    """A checkpoint's extra (multi-token-prediction) layer is not run by the forward: dropped with a warning."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(FIXTURES / "llada2" / "model.safetensors"))
    state["model.layers.2.input_layernorm.weight"] = torch.ones(32)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((FIXTURES / "llada2" / "config.json").read_text())
    with caplog.at_level("WARNING"):
        model = load_model(tmp_path)
    assert "dropping 1 tensors the forward never reads, e.g. model.layers.2." in caplog.text
    expected = torch.load(FIXTURES / "llada2" / "expected.pt")
    torch.testing.assert_close(model.module(expected["ids"]).logits, expected["logits"], atol=1e-4, rtol=0)


def test_block_size_comes_from_the_config():
    assert load_model(FIXTURES / "sdar").module.config.block_size == 4
    assert load_model(FIXTURES / "llada2").module.config.block_size == 32  # LLaDA2 generate's default block_length
    assert not hasattr(load_model(FIXTURES / "llada_moe").module.config, "block_size")  # LLaDA: no attention blocks


def test_llada_moe_claims_its_published_model_type_only_with_experts(tmp_path):
    config = json.loads((FIXTURES / "llada_moe" / "config.json").read_text())
    assert config["model_type"] == "llada"  # as published; the experts make it LLaDA-MoE
    from dllm_decode.models.registry import architecture_for

    assert architecture_for(config).model_class is LLaDAMoEModelLM
    assert architecture_for({"model_type": "llada", "d_model": 64}).model_class.__name__ == "LLaDAModelLM"
    assert architecture_for({**config, "model_type": "lladamoe"}).model_class is LLaDAMoEModelLM


@pytest.mark.parametrize("name,opts", STRATEGIES, ids=IDS)
def test_every_cache_at_refresh_1_equals_no_cache(published, prompts, name, opts):
    _, model = published
    options = dict(gen_length=16, block_length=8, threshold=0.05)
    lockstep(model, Sampler("threshold", **options), Sampler("threshold", cache=name, **{**opts, "refresh": 1},
                                                              **options), prompts)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("name", ["llada2", "sdar"])
def test_block_causal_prefix_and_dual_caches_are_exact_on_aligned_blocks(name, cache, prompts):
    """Decode blocks on attention blocks: the cached prefix never depends on later tokens, so reusing it is exact."""
    model = with_block_size(load_model(FIXTURES / name), 4)
    options = dict(gen_length=16, block_length=4)
    lockstep(model, Sampler("confidence", **options), Sampler("confidence", cache=cache, **options), prompts)


def test_a_block_fed_alone_against_cached_keys_gives_the_authors_logits():
    """Write every column's K/V (and position) once, then feed one block alone: its rows attend the cached
    columns through the block-causal pattern and reproduce the authors' full-sequence logits."""
    from dllm_decode.cache.store import KVBuffer, Writes

    model, expected = load_model(FIXTURES / "sdar"), torch.load(FIXTURES / "sdar" / "expected.pt")
    ids = expected["ids"]
    buffer = KVBuffer(*ids.shape)
    model.module(ids, cache=Writes(buffer, None, None))
    cols = torch.arange(8, 12).expand(2, 4)
    part = model.module(ids[:, 8:12], positions=cols, cache=Writes(buffer, cols, None)).logits
    torch.testing.assert_close(part, expected["logits"][:, 8:12], atol=1e-4, rtol=0)


PRESET_OPTIONS = {"adablock": {"delimiter_ids": (13,)}}  # adablock ends blocks at delimiters
DIFFUSION_PRESETS = sorted(set(PRESETS) - {"deer"})  # deer's target is autoregressive: tests/test_speculative.py
BLOCK_MODEL_REFUSALS = {"adablock", "prophet", "sched", "wino"}  # blocks free of the model's own (WINO: full attention)


@pytest.mark.parametrize("preset", DIFFUSION_PRESETS)
def test_every_sampler_runs(published, prompts, preset):
    """On a block-diffusion format (LLaDA2, SDAR) the block length follows the model, and the samplers whose
    blocks or early commit cross its blocks refuse it; every other sampler fills the whole canvas."""
    _, model = published
    opts = PRESET_OPTIONS.get(preset, {"block_length": 4})
    size = model.block_size
    if size is None and preset == "s2d2":
        with pytest.raises(ValueError, match="needs a block-diffusion model"):
            Sampler(preset, gen_length=8, **opts).generate(model, prompts)
        return
    if size is not None:
        opts = {k: v for k, v in opts.items() if k != "block_length"}
        if preset in BLOCK_MODEL_REFUSALS:
            with pytest.raises(ValueError, match=f"block-diffusion model \\(block size {size}\\)"):
                Sampler(preset, gen_length=size, **opts).generate(model, prompts)
            return
    gen_length = size or 8
    result = Sampler(preset, gen_length=gen_length, **opts).generate(model, prompts)
    assert result.canvas.shape == (2, gen_length) and not bool((result.canvas == MASK).any())


def test_dispatch_equals_a_per_token_reference():
    torch.manual_seed(0)
    experts = torch.nn.ModuleList(GatedMLP(8, 5) for _ in range(6))
    x, chosen, weights = torch.randn(11, 8), torch.randint(0, 6, (11, 3)), torch.rand(11, 3)
    reference = torch.stack([sum(w * experts[int(e)](t) for e, w in zip(c, ws)) for t, c, ws in zip(x, chosen, weights)])
    torch.testing.assert_close(dispatch(x, experts, chosen, weights), reference, atol=1e-6, rtol=1e-5)


def test_group_limited_routing_picks_only_from_the_best_groups():
    torch.manual_seed(1)
    logits, bias = torch.randn(7, 8), torch.zeros(8)
    bias[:4] = 5.0  # groups {0..3} and {4..7}: the bias puts every choice in the first
    chosen, weights = group_limited_sigmoid(logits, bias, top_k=2, n_group=2, topk_group=1, scale=2.5)
    assert bool((chosen < 4).all())
    torch.testing.assert_close(weights.sum(-1), torch.full((7,), 2.5))  # renormalised unbiased scores, scaled
    chosen, weights = softmax_top_k(logits, None, 2)
    torch.testing.assert_close(weights, logits.softmax(-1).topk(2).values)


@pytest.mark.parametrize("overrides,match", [
    ({"hidden_act": "gelu"}, "`hidden_act` must be 'silu'"),
    ({"score_function": "softmax"}, "`score_function` must be 'sigmoid'"),
    ({"rope_scaling": {"rope_type": "yarn"}}, "`rope_scaling` is not supported"),
    ({"num_experts": 6, "n_group": 4}, "`num_experts` must split into `n_group` groups"),
    ({"block_size": 0}, "`block_size` must be an int >= 1"),
])
def test_llada2_config_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        LLaDA2Config(**overrides)


@pytest.mark.parametrize("overrides,match", [
    ({"hidden_act": "gelu"}, "`hidden_act` must be one of"),
    ({"moe_router_score_function": "sigmoid"}, "`moe_router_score_function` must be one of"),
    ({"clip_qkv": 8.0}, "`clip_qkv` must be one of"),
    ({"rope_scaling": {"rope_type": "yarn"}}, "`rope_scaling` is not supported"),
    ({"num_hidden_layers": 2, "moe_layer_freq": [1]}, "`moe_layer_freq` must give one entry per layer"),
])
def test_llada_moe_config_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        LLaDAMoEConfig(**overrides)


def test_partial_rotary_factor_must_give_even_dims():
    assert rotary_dims(8, 0.5) == 4
    with pytest.raises(ValueError, match="`partial_rotary_factor` must give an even number of rotated dims"):
        rotary_dims(8, 0.375)


def test_with_block_size_needs_a_block_diffusion_model():
    with pytest.raises(ValueError, match="`model` must be a block-diffusion model"):
        with_block_size(load_model(FIXTURES / "llada_moe"), 4)
    with pytest.raises(ValueError, match="`block_size` must be an int >= 1"):
        with_block_size(load_model(FIXTURES / "llada2"), 0)

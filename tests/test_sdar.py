"""SDAR (block-diffusion, Qwen3 layout) and the `s2d2` loop."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import dllm_decode.speculative  # noqa: F401 - registers SDAR and the loops
from dllm_decode import Sampler, load_model, wrap
from dllm_decode.models.loading import zoo_names
from dllm_decode.models.sdar import SDARConfig, SDARForCausalLM, with_block_size
from dllm_decode.speculative.routing import ROUTES, expected_accepted

from .conftest import EOS, MASK, PAD, VOCAB


def tiny_sdar_module(seed: int = 0, **overrides) -> SDARForCausalLM:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, max_position_embeddings=256, block_size=4, mask_token_id=MASK,
               pad_token_id=PAD, bos_token_id=PAD, eos_token_id=EOS)
    module = SDARForCausalLM(SDARConfig(**{**cfg, **overrides})).eval()
    with torch.no_grad():  # random norm gains so q_norm / k_norm matter
        for name, param in module.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return module


@pytest.fixture(scope="module")
def sdar():
    return wrap(tiny_sdar_module(), mask_id=MASK, eos_ids=(EOS,))


def test_published_parameter_names_and_config_load(tmp_path):
    module = tiny_sdar_module()
    names = set(module.state_dict())
    for expected in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                     "model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight",
                     "model.layers.1.self_attn.o_proj.weight", "model.layers.1.mlp.down_proj.weight",
                     "model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"):
        assert expected in names
    assert not any(n.endswith("q_proj.bias") for n in names)  # Qwen3: no qkv bias
    config = module.config.to_dict()
    config.update({"model_type": "sdar", "architectures": ["SDARForCausalLM"], "fuse_cross_entropy": True,
                   "auto_map": {"AutoConfig": "configuration_sdar.SDARConfig"}})  # extra published keys are ignored
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "model.safetensors"))
    loaded = load_model(tmp_path)
    assert loaded.shift == 0 and loaded.native and loaded.mask_id == MASK
    x = torch.randint(0, 90, (2, 12))
    assert torch.allclose(loaded(x), wrap(module, mask_id=MASK, eos_ids=(EOS,))(x), atol=1e-5)


def test_attention_is_block_causal(sdar):
    """Changing a later block never changes an earlier block's logits; changing the same block does."""
    x = torch.randint(0, 90, (1, 12))
    base = sdar(x)
    later = x.clone()
    later[0, 9] = (later[0, 9] + 1) % 90
    assert torch.allclose(sdar(later)[:, :8], base[:, :8], atol=1e-6)
    same = x.clone()
    same[0, 7] = (same[0, 7] + 1) % 90
    assert not torch.allclose(sdar(same)[:, 4], base[:, 4], atol=1e-6)  # bidirectional inside block [4, 8)


def test_block_size_one_is_causal(sdar):
    x = torch.randint(0, 90, (1, 10))
    ar = with_block_size(sdar, 1)
    changed = x.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 90
    assert torch.allclose(ar(changed)[:, :5], ar(x)[:, :5], atol=1e-6)
    assert not torch.allclose(ar(changed)[:, :5], sdar(x)[:, :5], atol=1e-4)  # the modes differ
    assert with_block_size(ar, 4).module.block_size == 4


def test_s2d2_verifying_every_step_equals_ar_mode_greedy(sdar, ragged_prompts):
    ar = Sampler("confidence", gen_length=16, block_length=1).generate(with_block_size(sdar, 1), ragged_prompts)
    out = Sampler("s2d2", gen_length=16, block_length=4, route="always").generate(sdar, ragged_prompts)
    assert torch.equal(out.canvas, ar.canvas)


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_decodes_the_whole_canvas(sdar, ragged_prompts, route):
    out = Sampler("s2d2", gen_length=16, route=route).generate(sdar, ragged_prompts)
    assert not (out.canvas == MASK).any()
    assert out.steps <= 16


def test_s2d2_never_verifying_is_the_base_threshold_rule(sdar, ragged_prompts):
    base = Sampler("threshold", threshold=0.85, gen_length=16, block_length=4).generate(sdar, ragged_prompts)
    out = Sampler("s2d2", gen_length=16, route="never").generate(sdar, ragged_prompts)
    assert torch.equal(out.canvas, base.canvas) and out.nfe == base.nfe


def test_s2d2_samples_at_temperature(sdar, ragged_prompts):
    a = Sampler("s2d2", gen_length=16, route="always", temperature=1.0, seed=1).generate(sdar, ragged_prompts)
    b = Sampler("s2d2", gen_length=16, route="always", temperature=1.0, seed=1).generate(sdar, ragged_prompts)
    assert torch.equal(a.canvas, b.canvas) and not (a.canvas == MASK).any()


def test_expected_accepted_length():
    V = 4
    certain = torch.nn.functional.one_hot(torch.zeros(1, 3, dtype=torch.long), V).float()
    span = torch.tensor([[True, True, False]])
    assert float(expected_accepted(certain, span)) == pytest.approx(2.0)
    uniform = torch.full((1, 3, V), 1 / V)
    e = torch.exp(torch.tensor(-1.0)).item()  # uniform draft: H = log V, a = 1/e
    assert float(expected_accepted(uniform, span)) == pytest.approx(e + e * e, rel=1e-4)


@pytest.mark.parametrize("options, message", [
    ({"route": "sometimes"}, "`route` must be one of"),
    ({"min_span": 0, "route": "span"}, "`min_span` must be an int >= 1"),
    ({"route": "score", "min_span": 3}, "`min_span` only applies to route span"),
    ({"hysteresis_on": -6.0, "route": "hysteresis"}, "`hysteresis_off` must be below"),
    ({"cfg_scale": 1.0}, "`cfg_scale` must be 0 under `loop=\"s2d2\"`"),
])
def test_s2d2_errors(options, message):
    with pytest.raises(ValueError, match=message):
        Sampler("s2d2", gen_length=16, **options)


def test_s2d2_rejects_shifted_models(dream, ragged_prompts):
    with pytest.raises(ValueError, match="needs a block-diffusion model"):
        Sampler("s2d2", gen_length=16).generate(dream, ragged_prompts)


@pytest.mark.skipif("tiny-sdar" not in zoo_names(), reason="tiny-sdar not in the zoo yet")
def test_s2d2_on_tiny_sdar_equals_its_ar_mode():
    model = load_model("tiny-sdar")
    prompts = ["reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]", "sort [ Edgar Smith , Isabel Soto ]"]
    ar = Sampler("confidence", gen_length=32, block_length=1).generate(with_block_size(model, 1), prompts)
    out = Sampler("s2d2", gen_length=32, route="always").generate(model, prompts)
    assert torch.equal(out.canvas, ar.canvas)

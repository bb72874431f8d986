"""DiffusionGemma through the library: load through transformers' class, and the uniform-noise loop with
`Sampler("eb")` equals transformers' own `generate` token for token under the same seed."""
from __future__ import annotations

import pytest
import torch

from dllm_decode import Sampler, load_model

pytest.importorskip("transformers.models.diffusion_gemma")
from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion  # noqa: E402
from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig  # noqa: E402

from dllm_decode.models.diffusion_gemma import DiffusionGemmaLM, wrap_diffusion_gemma  # noqa: E402

V, CANVAS, EOS, PAD = 128, 8, 39, 0  # EOS: a token this model emits, so rows finish and pad


def tiny_diffusion_gemma(seed: int = 0) -> DiffusionGemmaForBlockDiffusion:
    """Two layers (one sliding, one full attention), four experts. The tied embedding is scaled up so the
    near-identity residual stream predicts the input token: argmax canvases settle and the early stop fires."""
    text = dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, global_head_dim=16, sliding_window=16, max_position_embeddings=256,
                layer_types=["sliding_attention", "full_attention"], num_experts=4, top_k_experts=2,
                moe_intermediate_size=32)
    vision = dict(model_type="gemma4_vision", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=8, position_embedding_size=64)  # unused, tiny
    torch.manual_seed(seed)
    module = DiffusionGemmaForBlockDiffusion(DiffusionGemmaConfig(text_config=text, vision_config=vision,
                                                                  canvas_length=CANVAS)).eval()
    with torch.no_grad():
        module.model.decoder.embed_tokens.weight.normal_(0.0, 1.0)  # tied with the encoder's and the LM head
    return module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    module = tiny_diffusion_gemma()
    module.generation_config.max_denoising_steps = 6
    module.generation_config.eos_token_id = [EOS]
    module.generation_config.pad_token_id = PAD
    path = tmp_path_factory.mktemp("diffusion-gemma")
    module.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint)


@pytest.fixture(scope="module")
def prompts():
    return torch.randint(3, V, (3, 5), generator=torch.Generator().manual_seed(9))


def test_load_model_uses_transformers_class_and_generation_config(model, checkpoint):
    assert isinstance(model, DiffusionGemmaLM) and isinstance(model.module, DiffusionGemmaForBlockDiffusion)
    assert model.canvas_length == CANVAS and model.vocab_size == V and model.eos_ids == (EOS,) and model.pad_id == PAD
    assert model.generation["max_denoising_steps"] == 6  # from generation_config.json
    assert model.generation["entropy_bound"] == 0.1 and model.generation["t_max"] == 0.8  # transformers' defaults
    expected = tiny_diffusion_gemma().state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in model.module.state_dict().items())


SETTINGS = {
    "checkpoint defaults (EOS stop, pad)": {},
    "bound 0.5, two stable steps": dict(entropy_bound=0.5, stability_threshold=2, confidence_threshold=5.0,
                                        max_denoising_steps=8),
    "accept all, early stop per row": dict(entropy_bound=100.0, stability_threshold=1, confidence_threshold=5.0,
                                           max_denoising_steps=8, t_min=0.2, t_max=1.0),
}


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
def test_eb_equals_transformers_generate(model, prompts, settings):
    options = {key: value for key, value in settings.items() if key != "entropy_bound"}
    if "entropy_bound" in settings:
        options["sampler_config"] = EntropyBoundSamplerConfig(entropy_bound=settings["entropy_bound"])
    torch.manual_seed(11)
    reference = model.module.generate(prompts, max_new_tokens=3 * CANVAS, **options)
    ours = Sampler("eb", loop="uniform", gen_length=3 * CANVAS, seed=11, **settings).generate(model, prompts)
    produced = reference.sequences.shape[1] - prompts.shape[1]  # transformers stops after a finished batch
    assert torch.equal(ours.canvas[:, :produced], reference.sequences[:, prompts.shape[1]:])
    assert (ours.canvas[:, produced:] == PAD).all()
    tokens = (ours.canvas[:, :produced] != PAD).sum(1)
    assert torch.allclose(tokens / torch.tensor(ours.row_nfe), reference.tokens_per_forward)


def test_rows_stop_early_at_their_own_step(model, prompts):
    """Row 1 emits no EOS, so only the stable-and-confident stop can keep it under its 2 x 8 step budget."""
    result = Sampler("eb", loop="uniform", gen_length=2 * CANVAS, seed=11, **SETTINGS["accept all, early stop per row"]
                     ).generate(model, prompts)
    assert not (result.canvas[1] == EOS).any() and result.row_nfe[1] < 2 * 8
    assert len(set(result.row_nfe)) > 1
    assert result.loop_stats["encoder_forwards"] == 2


def test_acceptance_comes_from_the_commit_rule(model, prompts):
    """Accept-everything under two different rules is the same decoding; a strict rule changes it."""
    def run(name, **options):
        return Sampler(name, loop="uniform", gen_length=2 * CANVAS, seed=3, **options).generate(model, prompts)

    everything = run("eb", entropy_bound=1e9)
    assert torch.equal(run("threshold", threshold=1e-9).canvas, everything.canvas)
    assert not torch.equal(run("eb", entropy_bound=0.0).canvas, everything.canvas)


@pytest.mark.parametrize("name,options", [("threshold", dict(threshold=0.5)), ("confidence", {}),
                                          ("eb", dict(entropy_bound=1.0, logits_eos_inf=True))])
def test_other_rules_run_on_diffusion_gemma(model, prompts, name, options):
    result = Sampler(name, loop="uniform", gen_length=2 * CANVAS, seed=5, **options).generate(model, prompts)
    assert result.canvas.shape == (3, 2 * CANVAS)
    assert ((result.canvas >= 0) & (result.canvas < V)).all()
    assert 0 < result.nfe <= 2 * 6
    if options.get("logits_eos_inf"):
        assert not (result.canvas == EOS).any()


def test_masked_loop_refuses_diffusion_gemma(model, prompts):
    with pytest.raises(ValueError, match="uniform-noise model with no mask token"):
        Sampler("eb", gen_length=CANVAS).generate(model, prompts)


def test_uniform_loop_refuses_masked_models(llada, prompts):
    with pytest.raises(ValueError, match="`loop='uniform'` needs a uniform-noise model"):
        Sampler("eb", loop="uniform", gen_length=CANVAS).generate(llada, prompts[:, :3] % 90)


@pytest.mark.parametrize("options,message", [
    (dict(gen_length=12), "`gen_length` must be a multiple of the model's canvas_length 8"),
    (dict(t_min=0.9, t_max=0.5), "`t_max` must be > `t_min`"),
])
def test_run_time_errors(model, prompts, options, message):
    with pytest.raises(ValueError, match=message):
        Sampler("eb", loop="uniform", **{"gen_length": CANVAS, **options}).generate(model, prompts)


@pytest.mark.parametrize("options,message", [
    (dict(name="confidence", steps=8), "`steps` is not used by the uniform loop"),
    (dict(block_length=8), "`block_length`/`blocks` are set by the model's `canvas_length`"),
    (dict(temperature=0.5), "`temperature` must be 0 under"),
    (dict(cfg_scale=1.0), "`cfg_scale` must be 0 under"),
    (dict(cache="dual"), "`loop='uniform'` needs a cache that recomputes every query row"),
    (dict(attention="sparse"), "cannot work with a loop that spends its forwards its own way"),
    (dict(blocks="adaptive"), "`loop='uniform'` needs a block schedule that splits the canvas into equal blocks"),
    (dict(eos_fill=True), "`loop='uniform'` cannot work with an early commit that edits the canvas"),
    (dict(max_denoising_steps=0), "`max_denoising_steps` must be None .* or an int >= 1"),
    (dict(stability_threshold=-1), "`stability_threshold` must be None .* or an int >= 0"),
    (dict(t_min=-0.1), "`t_min` must be None .* or a number >= 0"),
])
def test_construction_errors(options, message):
    name = options.pop("name", "eb")
    with pytest.raises(ValueError, match=message):
        Sampler(name, loop="uniform", gen_length=16, **options)


def test_load_and_wrap_errors(checkpoint, llada):
    with pytest.raises(ValueError, match="`mask_id` must be None for DiffusionGemma"):
        load_model(checkpoint, mask_id=3)
    with pytest.raises(ValueError, match="`module` must be a transformers DiffusionGemmaForBlockDiffusion"):
        wrap_diffusion_gemma(llada.module)


def test_a_left_padded_row_computes_as_alone(model):
    """Padding is hidden from a padded row. With one step per canvas the first canvas is the argmax of one forward
    from the first B x canvas random draws, so row 0 (padded) must equal its run alone."""
    g = torch.Generator().manual_seed(4)
    short, long = torch.randint(3, V, (3,), generator=g), torch.randint(3, V, (7,), generator=g)
    sampler = Sampler("eb", loop="uniform", gen_length=CANVAS, seed=2, max_denoising_steps=1)
    batched = sampler.generate(model, [short, long])
    assert torch.equal(batched.canvas[0], sampler.generate(model, short).canvas[0])


def test_on_step_streams_each_canvas_once_when_it_is_final(model, prompts):
    """The uniform loop re-predicts a whole canvas each step, so its tokens are final (and streamed) at its end."""
    events = []
    result = Sampler("eb", loop="uniform", gen_length=2 * CANVAS, seed=11, **SETTINGS["accept all, early stop per row"]
                     ).generate(model, prompts, on_step=events.append)
    assert 1 <= len(events) <= 2  # one event per canvas, and only canvases some row still decoded
    committed = torch.stack([e.committed for e in events])  # [events, B, G]
    assert int(committed.sum(0).max()) == 1  # each position streamed at most once
    written = committed.any(0)
    assert bool(written[:, :CANVAS].all())  # the first canvas of every row
    rebuilt = torch.stack([e.tokens for e in events]).where(committed, 0).sum(0)
    assert torch.equal(rebuilt[written], result.canvas.cpu()[written])

"""Model layer: published-format loading, reference logits, round trips, `logits_for`, wrapping."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

from dllm_decode import load_model, wrap
from dllm_decode.models import DreamModel, LLaDAModelLM
from dllm_decode.models.layers import LogitsOutput

from .conftest import EOS, MASK, tiny_dream_module, tiny_llada_module

FIXTURES = Path(__file__).parent / "fixtures" / "reference-logits"


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_reference_logits_of_the_authors_code(name):
    """The one check that our code computes what LLaDA's / Dream's own modeling code computes."""
    model = load_model(FIXTURES / name)
    expected = torch.load(FIXTURES / name / "expected.pt", weights_only=True)
    logits = model.module(expected["ids"]).logits  # unshifted, as the authors' forward returns
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)
    assert model.mask_id == 126 and 120 in model.eos_ids
    assert model.shift == (1 if name == "dream" else 0)


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_published_parameter_names_load_strictly(name, tmp_path):
    published = set(load_file(str(FIXTURES / name / "model.safetensors")))
    model = load_model(FIXTURES / name)
    assert set(model.module.state_dict()) == published
    # a checkpoint with one renamed tensor must fail loudly, not load half the weights
    (tmp_path / "config.json").write_text((FIXTURES / name / "config.json").read_text())
    state = load_file(str(FIXTURES / name / "model.safetensors"))
    key = next(iter(state))
    state[key + ".renamed"] = state.pop(key)
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"1 \(.*\) missing, 1 \(.*\.renamed\) unexpected"):
        load_model(tmp_path)


@pytest.mark.parametrize("build", [tiny_llada_module, tiny_dream_module])
def test_save_load_round_trip(build, tmp_path):
    module = build()
    module.save_pretrained(str(tmp_path))
    loaded = load_model(tmp_path)
    ids = torch.randint(0, 90, (2, 12))
    torch.testing.assert_close(loaded.module(ids).logits, module(ids).logits, atol=0, rtol=0)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] in ("llada", "Dream")


def test_auto_classes_build_our_code_without_remote_code():
    assert AutoConfig.for_model("llada").model_type == "llada"
    model = AutoModel.from_pretrained(str(FIXTURES / "llada"))
    assert isinstance(model, LLaDAModelLM)
    assert isinstance(AutoModel.from_pretrained(str(FIXTURES / "dream")), DreamModel)


@pytest.mark.parametrize("build", [tiny_llada_module, tiny_dream_module])
def test_logits_for_equals_full_forward(build):
    model = wrap(build(), mask_id=MASK, eos_ids=(EOS,))
    ids = torch.randint(0, 90, (2, 16))
    full = model(ids)
    assert (full.softmax(-1)[..., MASK] == 0).all()  # a denoiser never commits [MASK]
    pick = torch.tensor([[3, 7, 15], [0, 9, 12]])
    some = model(ids, logits_for=pick)
    torch.testing.assert_close(some, full.gather(1, pick[..., None].expand(-1, -1, full.shape[-1])), atol=1e-5, rtol=0)


def test_dream_logits_are_shifted_by_the_adapter(dream):
    ids = torch.randint(0, 90, (1, 10))
    raw = dream.module(ids).logits
    raw[..., MASK] = torch.finfo(raw.dtype).min  # the adapter rules out committing [MASK]
    shifted = dream(ids)
    torch.testing.assert_close(shifted[:, 1:], raw[:, :-1])
    torch.testing.assert_close(shifted[:, :1], raw[:, :1])


def test_positions_and_padding_mask_make_left_padding_invisible(llada):
    ids = torch.randint(0, 90, (1, 9))
    alone = llada(ids)
    padded = torch.cat([torch.full((1, 4), 97), ids], dim=1)
    keep = torch.cat([torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 9, dtype=torch.bool)], dim=1)
    positions = (keep.long().cumsum(1) - 1).clamp_min(0)
    with_pad = llada(padded, positions=positions, attention_mask=keep)
    torch.testing.assert_close(with_pad[:, 4:], alone, atol=1e-5, rtol=0)
    four_d = keep[:, None, None, :].expand(1, 1, 13, 13)
    torch.testing.assert_close(llada(padded, positions=positions, attention_mask=four_d), with_pad)


class ForeignLM(torch.nn.Module):
    """A module with a LLaDA-like `model(input_ids).logits` but none of our keyword arguments."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids):
        return LogitsOutput(self.inner(input_ids).logits)


def test_generic_wrap_matches_native_and_explains_its_limits(llada):
    foreign = wrap(ForeignLM(llada.module), mask_id=MASK, eos_ids=(EOS,))
    assert not foreign.native
    ids = torch.randint(0, 90, (2, 12))
    torch.testing.assert_close(foreign(ids), llada(ids))
    with pytest.raises(ValueError, match="attention_mask"):
        foreign(ids, attention_mask=torch.ones(2, 12, dtype=torch.bool))
    with pytest.raises(ValueError, match="KV cache"):
        foreign(ids, cache=object())


def test_load_model_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="local checkpoint directory"):
        load_model("no/such/model")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt9"}))
    with pytest.raises(ValueError, match="model_type"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        load_model(FIXTURES / "llada", dtype="float8")
    with pytest.raises(ValueError, match="mask_id"):
        wrap(torch.nn.Linear(2, 2), mask_id=-1, eos_ids=(1,))


def test_unsupported_llada_features_are_rejected():
    from dllm_decode.models import LLaDAConfig

    with pytest.raises(ValueError, match="alibi"):
        LLaDAConfig(alibi=True)

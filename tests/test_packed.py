"""Packed CPU linears: same products as F.linear to fp32 rounding, independent of the row count."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dllm_decode.models import load_model
from dllm_decode.models.packed import PackedLinear, pack_linears, packing_available

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN")


@pytest.mark.parametrize("shape", [(32, 64), (192, 512), (1376, 512), (512, 4000), (100, 37)])
def test_rows_are_bitwise_independent_of_how_many_are_multiplied(shape):
    torch.manual_seed(0)
    layer = nn.Linear(*shape)
    pack_linears(layer)
    x = torch.randn(300, shape[0]) * 3
    with torch.no_grad():
        full = layer(x)
        for rows in (1, 2, 5, 31, 32, 33, 299):
            assert torch.equal(layer(x[:rows]), full[:rows]), rows
        assert torch.equal(layer(x.view(3, 100, -1)).view(300, -1), full)
        reference = nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(full, reference, rtol=1e-5, atol=1e-5)


def test_training_and_in_place_edits_take_the_current_weight():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8)
    assert pack_linears(layer) == 1 and type(layer) is PackedLinear
    x = torch.randn(4, 16, requires_grad=True)
    layer(x).sum().backward()  # grad enabled: plain F.linear, gradients flow
    assert layer.weight.grad is not None and x.grad is not None
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2.0)  # an in-place edit must re-pack, not serve the stale packed copy
        after = layer(x)
    torch.testing.assert_close(after - layer.bias, 2.0 * (before - layer.bias), rtol=1e-5, atol=1e-5)


def test_load_model_packs_on_cpu_unless_told_not_to():
    packed = load_model("tiny-llada")
    plain = load_model("tiny-llada", pack=False)
    kinds = lambda m: {type(layer) for layer in m.module.modules() if isinstance(layer, nn.Linear)}
    assert kinds(packed) == {PackedLinear} and kinds(plain) == {nn.Linear}
    ids = torch.randint(0, 100, (2, 40))
    torch.testing.assert_close(packed(ids), plain(ids), rtol=1e-4, atol=1e-4)


def test_a_used_packed_layer_can_be_copied_and_pickled():
    import copy
    import io

    layer = nn.Linear(16, 8)
    pack_linears(layer)
    x = torch.randn(3, 16)
    with torch.no_grad():
        expected = layer(x)  # builds the opaque packed copy, which torch cannot copy or pickle
        clone = copy.deepcopy(layer)
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert torch.equal(clone(x), expected) and torch.equal(loaded(x), expected)


def test_inference_mode_weights_are_packed_too():
    with torch.inference_mode():
        layer = nn.Linear(16, 8)  # parameters made under inference mode carry no version counter
        pack_linears(layer)
        x = torch.randn(3, 16)
        torch.testing.assert_close(layer(x), nn.functional.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)

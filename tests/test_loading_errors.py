"""Every way a checkpoint directory (or a load argument) can be wrong gives one line naming the file and the
problem, from Python as a ValueError and from the CLI as exit code 2 with no traceback."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dllm_decode import Sampler, load_model
from dllm_decode.cli import main
from dllm_decode.models import LLaDAConfig
from dllm_decode.models.checkpoint import CheckpointError
from dllm_decode.models.loading import ZOO_DIR, resolve_device, resolve_mask_id

FIXTURES = Path(__file__).parent / "fixtures" / "reference-logits"


def copy_checkpoint(src: Path, dst: Path, **config_changes) -> Path:
    """`src` copied to `dst`, with config.json keys changed (None deletes a key)."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    for key, value in config_changes.items():
        config.pop(key) if value is None else config.__setitem__(key, value)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and len(message) < 700, message
    return message


def truncated(tmp_path: Path) -> Path:
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "truncated")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    return ckpt


def foreign_weights(tmp_path: Path) -> Path:
    """tiny-llada's config.json beside tiny-dream's weights."""
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "foreign")
    shutil.copy(ZOO_DIR / "tiny-dream" / "model.safetensors", ckpt / "model.safetensors")
    return ckpt


def no_config(tmp_path: Path) -> Path:
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "noconfig")
    (ckpt / "config.json").unlink()
    return ckpt


def no_mask_small_vocab(tmp_path: Path) -> Path:
    return copy_checkpoint(FIXTURES / "llada", tmp_path / "nomask", mask_token_id=None)


def sharded(tmp_path: Path) -> Path:
    """tiny-llada split into two shards with a `model.safetensors.index.json`."""
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "sharded")
    state = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(ckpt / shard))
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return ckpt


def test_truncated_weights_name_the_file(tmp_path):
    ckpt = truncated(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert str(ckpt / "model.safetensors") in one_line(err) and "truncated" in str(err.value)


def test_git_lfs_pointer_says_so(tmp_path):
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "lfs")
    (ckpt / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    with pytest.raises(CheckpointError, match="git lfs pull"):
        load_model(ckpt)


def test_missing_or_invalid_config(tmp_path):
    ckpt = no_config(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert f"{ckpt} has no config.json" in one_line(err)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_model(ckpt)


def test_weights_of_another_architecture_list_three_names_of_each_side(tmp_path):
    ckpt = foreign_weights(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    message = one_line(err)
    expected_part, found_part = message.split("found ")
    assert str(ckpt / "model.safetensors") in message and "another architecture" in message
    assert "expected 21 tensors (model.transformer.wte.weight, " in expected_part  # tiny-llada: 21 tensors
    assert found_part.startswith("27 (lm_head.weight, model.embed_tokens.weight, ")  # tiny-dream: 27
    listed = [part.split("(")[1].split(")")[0].split(", ") for part in (expected_part, found_part)]
    assert [len(names) for names in listed] == [4, 4] and listed[0][3] == listed[1][3] == "..."  # 3 names each


def test_missing_and_unexpected_keys_are_counted(tmp_path):
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "keys")
    state = load_file(str(ckpt / "model.safetensors"))
    del state["model.transformer.ln_f.weight"]
    state["model.transformer.extra.weight"] = torch.zeros(2)
    save_file(state, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert ("1 (model.transformer.ln_f.weight) missing, 1 (model.transformer.extra.weight) unexpected"
            in one_line(err))


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path):
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "shapes", mlp_hidden_size=256)  # weights have 512
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    message = one_line(err)
    assert "`model.transformer.blocks.0.ff_proj.weight` in " + str(ckpt / "model.safetensors") in message
    assert "has shape [512, 192], but config.json describes [256, 192] (and 5 more" in message


def test_sharded_checkpoint_loads_and_a_missing_shard_is_named(tmp_path):
    ckpt = sharded(tmp_path)
    whole = load_model("tiny-llada")
    split = load_model(ckpt)
    ids = torch.tensor([[5, 6, 7, 2, 2]])
    torch.testing.assert_close(split(ids), whole(ids), rtol=0, atol=0)
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert (f"{ckpt / 'model.safetensors.index.json'} maps 11 tensors to model-00002-of-00002.safetensors, "
            f"which is missing from {ckpt}") in one_line(err)
    (ckpt / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="must be JSON with a `weight_map`"):
        load_model(ckpt)


def test_unknown_model_type_and_invalid_config_values_name_the_file(tmp_path):
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "gpt9", model_type="gpt9")
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)
    assert f"`model_type` in {ckpt / 'config.json'} must be one of [" in one_line(err)
    ckpt = copy_checkpoint(ZOO_DIR / "tiny-llada", tmp_path / "alibi", alibi=True)
    with pytest.raises(CheckpointError, match=f"^{ckpt / 'config.json'}: `alibi` must be False"):
        load_model(ckpt)


def test_mask_id_must_lie_in_the_vocabulary(tmp_path):
    ckpt = no_mask_small_vocab(tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_model(ckpt)  # LLaDA's published default 126336 on a 128-token vocabulary
    assert "has no `mask_token_id`, and the LLaDAConfig default 126336 is outside its vocabulary " \
           "(vocab_size=128); pass the mask token's id with `load_model(..., mask_id=ID)`" in one_line(err)
    assert load_model(ckpt, mask_id=126).mask_id == 126
    with pytest.raises(CheckpointError, match=r"^`mask_id` must be a token id in \[0, 128\) .* got 500"):
        load_model(ckpt, mask_id=500)
    bad = copy_checkpoint(FIXTURES / "llada", tmp_path / "badmask", mask_token_id=128)
    with pytest.raises(CheckpointError, match=r"^`mask_token_id` in .*badmask/config.json must be .* got 128"):
        load_model(bad)


def test_a_missing_mask_id_that_fits_uses_the_published_default_and_says_so(caplog):
    config = LLaDAConfig(vocab_size=126464)
    with caplog.at_level(logging.WARNING, logger="dllm_decode.models.loading"):
        assert resolve_mask_id(config, {"model_type": "llada"}, None, Path("x/config.json")) == 126336
    assert "x/config.json has no `mask_token_id`; using the LLaDAConfig default 126336" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match=r"^`device` 'cuda' needs a CUDA GPU, but .*; use `device='cpu'`"):
        load_model("tiny-llada", device="cuda")


def test_missing_gpu_index_and_unknown_device_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"`device` 'cuda:3' names GPU 3, but 2 GPU\(s\) are visible"):
        resolve_device("cuda:3")
    with pytest.raises(ValueError, match="`device` must name a torch device .* got 'gpu'"):
        resolve_device("gpu")


def test_token_ids_outside_the_vocabulary_are_refused_before_decoding():
    model = load_model("tiny-llada")
    sampler = Sampler("confidence", gen_length=8)
    for prompt in ([[5, 6, 400]], torch.tensor([[5, -1, 7]]), [torch.tensor([5, 6]), torch.tensor([324])]):
        with pytest.raises(ValueError, match=r"^`prompt` token ids must be in \[0, 324\) .* got (400|-1|324) \(1 id"):
            sampler.generate(model, prompt)
    assert sampler.generate(model, [[5, 6, 323]]).ids  # the last id is fine


@pytest.mark.parametrize("broken", [truncated, foreign_weights, no_config, no_mask_small_vocab, sharded, "cuda"])
def test_cli_prints_one_line_and_exits_2(broken, tmp_path, capsys):
    if broken == "cuda":
        if torch.cuda.is_available():
            pytest.skip("checks the refusal on a machine without CUDA")
        model, device, named = "tiny-llada", ["--device", "cuda"], "`device` 'cuda'"
    else:
        ckpt = broken(tmp_path)
        if broken is sharded:
            (ckpt / "model-00001-of-00002.safetensors").unlink()
        model, device, named = str(ckpt), [], str(ckpt)
    code = main(["generate", "--model", model, *device, "--threads", "1", "-o", "gen_length=8", "hello"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert named in err

"""The answer-conditioning probe tells a model that reads its committed tokens from one that does not."""
from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import MaskedLMOutput

from dllm_decode import wrap
from dllm_decode.zoo.probe import answer_conditioning, last_name_slots
from dllm_decode.zoo.tokenizer import build_tokenizer

TOK = build_tokenizer()


class Induction(nn.Module):
    """Oracle: at each position, the token that follows the previous position's token where it first occurs."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids: torch.Tensor) -> MaskedLMOutput:
        ids = input_ids[0]
        logits = torch.zeros(1, len(ids), self.vocab)
        for i in range(1, len(ids)):
            earlier = (ids[: i - 1] == ids[i - 1]).nonzero()
            if len(earlier):
                logits[0, i, ids[int(earlier[0]) + 1]] = 10.0
        return MaskedLMOutput(logits=logits)


class PromptOnly(Induction):
    """Reads nothing of the answer: always the prompt's first last name at every position."""

    def forward(self, input_ids: torch.Tensor) -> MaskedLMOutput:
        logits = torch.zeros(1, input_ids.shape[1], self.vocab)
        logits[..., input_ids[0, 3]] = 10.0  # "shuffle [ First Last ...": the first last name
        return MaskedLMOutput(logits=logits)


def model_of(module: nn.Module):
    return wrap(module, mask_id=TOK.mask_token_id, eos_ids=(TOK.eos_token_id,), tokenizer=TOK)


def test_last_name_slots_follow_first_names():
    assert last_name_slots("[ Ann Lee , Bob Ray ]".split()) == [2, 5]
    assert last_name_slots("[ ]".split()) == []


def test_probe_separates_reading_from_ignoring_the_answer():
    reader = answer_conditioning(model_of(Induction(len(TOK))), samples=16)
    assert reader.visible > 0.95 and reader.blind < 0.5  # not 1: a first name can occur twice in a line
    ignorer = answer_conditioning(model_of(PromptOnly(len(TOK))), samples=16)
    assert ignorer.visible == ignorer.blind < 0.5


class Excluder(nn.Module):
    """Oracle for shuffle: every position predicts the first prompt first name not yet in the answer."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids: torch.Tensor) -> MaskedLMOutput:
        ids = input_ids[0].tolist()
        split = ids.index(TOK.convert_tokens_to_ids("]")) + 1  # "shuffle [ F L , ... ]" ends the prompt
        firsts = ids[2:split:3]
        logits = torch.zeros(1, len(ids), self.vocab)
        free = [f for f in firsts if f not in ids[split:]]
        logits[..., (free or firsts)[0]] = 10.0
        return MaskedLMOutput(logits=logits)


def test_exclusion_probe_tells_an_excluding_model_from_a_repeating_one():
    from dllm_decode.zoo.probe import next_name_exclusion

    excluding = next_name_exclusion(model_of(Excluder(len(TOK))), samples=40)
    assert excluding.unused > 0.9 and excluding.reused < 0.1
    repeating = next_name_exclusion(model_of(Induction(len(TOK))), samples=40)  # copies, never excludes
    assert repeating.unused < 0.5


class Copier(Induction):
    """Oracle for copy: canvas column c holds the prompt list's token c, then EOS."""

    def forward(self, input_ids: torch.Tensor) -> MaskedLMOutput:
        ids = input_ids[0].tolist()
        split = ids.index(TOK.convert_tokens_to_ids("]")) + 1  # "copy [ F L , ... ]" ends the prompt
        source = ids[1:split] + [TOK.eos_token_id] * len(ids)
        logits = torch.zeros(1, len(ids), self.vocab)
        for col in range(split, len(ids)):
            logits[0, col, source[col - split]] = 10.0
        return MaskedLMOutput(logits=logits)


def test_left_to_right_decoding_scores_what_the_model_writes():
    from dllm_decode.zoo.probe import left_to_right_scores

    assert left_to_right_scores(model_of(Copier(len(TOK))), tasks=("copy",), per_task=6) == {"copy": 1.0}
    assert left_to_right_scores(model_of(PromptOnly(len(TOK))), tasks=("copy",), per_task=6) == {"copy": 0.0}


def test_causal_probes_refuse_a_model_without_an_autoregressive_mode(tmp_path):
    import pytest

    from dllm_decode.zoo.probe import main
    from dllm_decode.zoo.train import TrainConfig, build_model, export

    cfg = TrainConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp=64)
    module = build_model(cfg, len(TOK), TOK.mask_token_id, TOK.eos_token_id, TOK.pad_token_id)
    export(module, TOK, tmp_path, {})
    with pytest.raises(SystemExit, match="shifted-logit"):
        main([str(tmp_path), "--causal"])


def test_a_training_checkpoint_probes_like_its_export(tmp_path):
    from dllm_decode import load_model
    from dllm_decode.zoo.probe import load_any
    from dllm_decode.zoo.train import TrainConfig, train

    cfg = TrainConfig(arch="dream", d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp=64, steps=2, batch_size=2,
                      warmup=1, save_every=2)
    train(cfg, tmp_path)
    from_state, exported = load_any(str(tmp_path / "train_state.ckpt.pt")), load_model(tmp_path)
    assert from_state.shift == exported.shift == 1
    ids = torch.tensor([TOK("shuffle [ Ann Lee , Bob Ray ]").input_ids + [TOK.mask_token_id] * 4])
    torch.testing.assert_close(from_state(ids), exported(ids), atol=2e-2, rtol=0)  # the export is fp16

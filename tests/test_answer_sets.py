"""The exact denoiser over answer sets a user supplies (`load_oracle(answers=...)`)."""
from __future__ import annotations

import json

import pytest
import torch

from dllm_decode import Sampler
from dllm_decode.models.oracle import load_oracle

G = 8
SETS = {"A B": ["A B C", "A C B", "B A C", "A C B"],  # a duplicate counts once
        "copy 1 2 3": ["4 5", "5 4", "6"],  # answers of different lengths: EOS after each
        "C": ["D"]}


@pytest.fixture(scope="module")
def oracle():
    return load_oracle(answers=SETS)


def brute_force(valid: list[str], canvas: list[str | None]) -> list[dict[str, float]]:
    """P(word at i | canvas) counted from scratch over the distinct answers the canvas allows."""
    padded = [a.split() + ["<eos>"] * (G - len(a.split())) for a in dict.fromkeys(valid)]
    fits = [a for a in padded if all(c is None or c == w for c, w in zip(canvas, a))]
    return [{w: sum(a[i] == w for a in fits) / len(fits) for w in {a[i] for a in fits}} for i in range(G)]


@pytest.mark.parametrize("prompt, canvas", [
    ("A B", [None] * G), ("A B", ["A"] + [None] * (G - 1)), ("A B", [None, "C"] + [None] * (G - 2)),
    ("copy 1 2 3", [None] * G), ("copy 1 2 3", [None, None, "<eos>"] + [None] * (G - 3)),
])
def test_marginals_equal_an_independent_count(oracle, prompt, canvas):
    vocab = oracle.tokenizer.get_vocab()
    ids = oracle.tokenizer(prompt, add_special_tokens=False).input_ids
    x = torch.tensor([ids + [vocab[w] if w else oracle.mask_id for w in canvas]])
    probs = oracle(x).softmax(-1)[0, len(ids):].double()  # [G, V]
    for i, expected in enumerate(brute_force(SETS[prompt], canvas)):
        dense = torch.zeros(probs.shape[-1], dtype=torch.float64)
        for word, p in expected.items():
            dense[vocab[word]] = p
        torch.testing.assert_close(probs[i], dense, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["confidence", "threshold", "eb"])
def test_ragged_batches_decode_valid_answers_and_equal_one_by_one(oracle, name):
    prompts = list(SETS)
    sampler = Sampler(name, gen_length=G)
    batched = sampler.generate(oracle, prompts)
    assert all(text in SETS[p] for p, text in zip(prompts, batched.text)), batched.text
    assert batched.loop_stats["oracle_fallbacks"] == 0
    for row, prompt in enumerate(prompts):
        assert torch.equal(sampler.generate(oracle, prompt).canvas[0], batched.canvas[row])


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_stepwise_decoding_under_a_cache_stays_valid(oracle, cache):
    result = Sampler("confidence", gen_length=G, block_length=4, cache=cache).generate(oracle, list(SETS))
    assert all(text in SETS[p] for p, text in zip(SETS, result.text)), result.text


def test_stepwise_sampling_only_draws_valid_answers_and_each_of_them(oracle):
    result = Sampler("random", gen_length=G, temperature=1.0, seed=3).generate(oracle, ["A B"] * 60)
    assert set(result.text) == set(SETS["A B"])


def test_a_jsonl_file_gives_the_same_oracle(oracle, tmp_path):
    path = tmp_path / "sets.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "answers": a}) + "\n" for p, a in SETS.items()))
    from_file = load_oracle(answers=str(path))
    x = torch.tensor([oracle.tokenizer("copy 1 2 3", add_special_tokens=False).input_ids + [oracle.mask_id] * G])
    torch.testing.assert_close(from_file(x), oracle(x))


@pytest.mark.parametrize("answers, match", [
    ({}, "`answers` must be a non-empty mapping"),
    ({"A B": "A B C"}, "must map each prompt string to a non-empty list of answer strings"),
    ({"A B": []}, "must map each prompt string to a non-empty list"),
    ({"A B": ["A hello"]}, r"zoo's word-level vocabulary .*got \['hello'\] in 'A hello' \(prompt 'A B'\)"),
    ({"A": ["B"], "A B": ["C"]}, "prompts must not be prefixes of one another .*'A' and 'A B'"),
])
def test_bad_answer_sets_raise(answers, match):
    with pytest.raises(ValueError, match=match):
        load_oracle(answers=answers)


def test_file_and_use_errors(oracle, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "A", "answers": ["B"]}) + "\n" + '{"prompt": "C"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: each line must be a JSON object"):
        load_oracle(answers=path)
    with pytest.raises(ValueError, match="`index_base` reads the task suite's index prompts"):
        load_oracle(answers=SETS, index_base=1)
    with pytest.raises(ValueError, match="no answer set for the prompt 'B A'"):
        Sampler("threshold", gen_length=G).generate(oracle, "B A")
    with pytest.raises(ValueError, match="`gen_length` must be >= 3"):
        Sampler("threshold", gen_length=2).generate(oracle, "A B")

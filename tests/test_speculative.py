"""Speculative loops: the shared verifier, `ssd` (lossless vs stepwise decoding) and `deer` (lossless vs the AR target)."""
from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2
from transformers import LlamaConfig, LlamaForCausalLM

import dllm_decode.speculative  # noqa: F401 - registers the loops
from dllm_decode import Sampler, load_model, wrap
from dllm_decode.models.loading import zoo_names
from dllm_decode.speculative import verify, wrap_causal_lm

from .conftest import EOS, MASK, PAD, VOCAB, tiny_llada_module


# ---------------------------------------------------------------- verifier
def test_verifier_at_temperature_zero_is_longest_exact_prefix_plus_target_token():
    V = 5
    target = torch.nn.functional.one_hot(torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]]), V).float()  # [2, 4, V]
    drafts = torch.tensor([[1, 2, 0], [0, 0, 0]])
    verdict = verify(drafts, None, target, temperature=0)
    assert verdict.accepted.tolist() == [2, 3]
    assert verdict.token.tolist() == [3, 0]  # the target's argmax at the first mismatch / the bonus row
    assert verdict.has_token.all()


def test_verifier_respects_the_limit_and_reports_missing_bonus():
    V = 4
    target = torch.nn.functional.one_hot(torch.tensor([[1, 1, 1]]), V).float()
    verdict = verify(torch.tensor([[1, 1, 1]]), None, target, temperature=0, limit=torch.tensor([2]))
    assert verdict.accepted.tolist() == [2] and verdict.token.tolist() == [1]
    verdict = verify(torch.tensor([[1, 1, 1]]), None, target, temperature=0)
    assert verdict.accepted.tolist() == [3] and not verdict.has_token.any()  # k rows only: no bonus row


def test_verifier_emits_the_target_distribution():
    """One draft from q, target p: the emitted first token is distributed as p (chi-square at 1%)."""
    g = torch.Generator().manual_seed(0)
    V, N = 6, 20000
    p = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.05, 0.05], dtype=torch.float64)
    q = torch.tensor([0.05, 0.05, 0.3, 0.3, 0.2, 0.1], dtype=torch.float64)
    drafts = torch.multinomial(q.expand(N, V), 1, replacement=True, generator=g)  # [N, 1]
    verdict = verify(drafts, q.expand(N, 1, V), p.expand(N, 2, V), temperature=1.0, generator=g)
    first = torch.where(verdict.accepted > 0, drafts[:, 0], verdict.token)
    observed = torch.bincount(first, minlength=V).double()
    stat = float(((observed - N * p) ** 2 / (N * p)).sum())
    assert stat < chi2.ppf(0.99, V - 1)


def test_verifier_rejects_a_mismatched_target():
    with pytest.raises(ValueError, match="`target_probs` must have k"):
        verify(torch.zeros(1, 3, dtype=torch.long), None, torch.rand(1, 5, 4), temperature=0)


# ---------------------------------------------------------------- ssd
@pytest.mark.parametrize("D", [2, 4, 8])
def test_ssd_equals_stepwise_confidence_with_fewer_forwards(any_model, ragged_prompts, D):
    reference = Sampler("confidence", gen_length=16, block_length=8).generate(any_model, ragged_prompts)
    out = Sampler("ssd", gen_length=16, block_length=8, draft_length=D).generate(any_model, ragged_prompts)
    assert torch.equal(out.canvas, reference.canvas)
    assert out.nfe <= reference.nfe


def test_ssd_accepts_whole_chains_on_a_confident_model(ragged_prompts):
    """A model whose predictions ignore masks agrees with its own drafts: D tokens per forward."""
    class Echo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the adapter a device

        def forward(self, input_ids, attention_mask=None):
            return torch.nn.functional.one_hot((input_ids * 7 + torch.arange(input_ids.shape[1])) % 90, VOCAB).float() \
                * torch.linspace(2, 1, input_ids.shape[1])[:, None]
    model = wrap(Echo(), mask_id=MASK, eos_ids=(EOS,))
    reference = Sampler("confidence", gen_length=16, block_length=8).generate(model, ragged_prompts)
    out = Sampler("ssd", gen_length=16, block_length=8, draft_length=4).generate(model, ragged_prompts)
    assert torch.equal(out.canvas, reference.canvas)
    assert out.nfe < reference.nfe / 2
    assert out.loop_stats["mean_accepted"] > 2 and out.summary()["mean_accepted"] == out.loop_stats["mean_accepted"]


@pytest.mark.parametrize("options, message", [
    ({"draft_length": 1}, "`draft_length` must be an int >= 2"),
    ({"temperature": 0.5}, "`temperature` must be 0"),
    ({"steps": 8}, "`steps` must equal `gen_length`"),
    ({"cfg_scale": 1.0}, "`cfg_scale` must be 0 under `loop=\"ssd\"`"),
])
def test_ssd_errors(options, message):
    with pytest.raises(ValueError, match=message):
        Sampler("ssd", gen_length=16, block_length=8, **options)


def test_ssd_rejects_other_rules():
    with pytest.raises(ValueError, match="`loop='ssd'` needs a rule that commits, at one token per step, the single most confident"):
        Sampler("threshold", gen_length=16, loop="ssd")


@pytest.mark.parametrize("name", ["tiny-llada", "tiny-dream", "tiny-deer-drafter"])
def test_ssd_equals_stepwise_on_the_zoo_models(name):
    if name not in zoo_names():
        pytest.skip(f"{name} is not in the zoo yet")
    model = load_model(name)
    prompts = ["reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]", "sort [ Edgar Smith , Isabel Soto ]"]
    reference = Sampler("confidence", gen_length=32, block_length=8).generate(model, prompts)
    out = Sampler("ssd", gen_length=32, block_length=8, draft_length=4).generate(model, prompts)
    assert torch.equal(out.canvas, reference.canvas)
    assert out.nfe < reference.nfe


# ---------------------------------------------------------------- deer
def tiny_llama(vocab: int = VOCAB, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, pad_token_id=PAD % vocab,
                      eos_token_id=EOS % vocab, bos_token_id=PAD % vocab)
    return LlamaForCausalLM(cfg).eval()


@torch.no_grad()
def greedy(module: torch.nn.Module, prompt: torch.Tensor, n: int, eos: int) -> list[int]:
    seq, out = prompt[None], []
    for _ in range(n):
        token = int(module(seq).logits[0, -1].argmax())
        if token == eos:
            break
        out.append(token)
        seq = torch.cat([seq, torch.tensor([[token]])], 1)
    return out


@pytest.fixture(scope="module")
def deer_pair():
    target = wrap_causal_lm(tiny_llama(), eos_ids=EOS, mask_id=MASK)
    drafter = wrap(tiny_llada_module(seed=3), mask_id=MASK, eos_ids=(EOS,))
    return target, drafter


@pytest.mark.parametrize("k", [1, 3, 8])
def test_deer_at_temperature_zero_equals_the_targets_greedy_decoding(deer_pair, ragged_prompts, k):
    target, drafter = deer_pair
    out = Sampler("deer", drafter=drafter, draft_length=k, gen_length=16).generate(target, ragged_prompts)
    for row, prompt in zip(out.ids, ragged_prompts):
        assert row == greedy(target.module, prompt, 16, EOS)
    assert out.nfe <= 16
    stats = out.loop_stats
    assert stats["drafter_nfe"] == stats["target_nfe"] == out.nfe and 0 <= stats["mean_accepted"] <= k


def test_deer_first_token_follows_the_target_distribution():
    """A toy target over 8 tokens; 4000 rows (one batch) of the same prompt; chi-square at 1%."""
    V, N = 8, 4000
    module = tiny_llama(vocab=V, seed=1)
    target = wrap_causal_lm(module, eos_ids=7, mask_id=6, pad_id=5)
    drafter = wrap(tiny_llada_module(seed=2, vocab_size=V, embedding_size=V, mask_token_id=6, eos_token_id=7,
                                     pad_token_id=5), mask_id=6, eos_ids=(7,))
    prompt = torch.tensor([1, 2, 3])
    out = Sampler("deer", drafter=drafter, draft_length=3, gen_length=4, temperature=1.0, seed=0).generate(
        target, [prompt] * N)
    observed = torch.bincount(out.canvas[:, 0], minlength=V).double()
    with torch.no_grad():
        p = torch.softmax(module(prompt[None]).logits[0, -1].double(), -1)
    stat = float(((observed - N * p) ** 2 / (N * p)).sum())
    assert stat < chi2.ppf(0.99, V - 1)


def test_deer_errors(deer_pair):
    target, drafter = deer_pair
    with pytest.raises(ValueError, match="`drafter` is required"):
        Sampler("deer")
    with pytest.raises(ValueError, match="`draft_length` must be an int >= 1"):
        Sampler("deer", drafter=drafter, draft_length=0)
    with pytest.raises(ValueError, match="`drafter` must be a diffusion LM"):
        Sampler("deer", drafter=target)
    with pytest.raises(ValueError, match="needs an autoregressive target"):
        Sampler("deer", drafter=drafter, gen_length=8).generate(drafter, [torch.tensor([1, 2])])
    with pytest.raises(ValueError, match="cannot denoise a canvas"):
        Sampler("confidence", gen_length=8).generate(target, [torch.tensor([1, 2])])
    with pytest.raises(ValueError, match="`loop='deer'` needs a rule that fills every eligible mask in one step"):
        Sampler("threshold", loop="deer", drafter=drafter)


def test_deer_rejects_a_drafter_with_another_vocabulary(deer_pair, ragged_prompts):
    target, _ = deer_pair
    other = wrap(tiny_llada_module(seed=1, vocab_size=120, embedding_size=120), mask_id=MASK, eos_ids=(EOS,))
    with pytest.raises(ValueError, match="drafter vocabulary"):
        Sampler("deer", drafter=other, gen_length=8).generate(target, ragged_prompts)


@pytest.mark.skipif("tiny-ar" not in zoo_names() or "tiny-deer-drafter" not in zoo_names(),
                    reason="tiny-ar / tiny-deer-drafter not in the zoo yet")
def test_deer_on_the_zoo_equals_tiny_ar_greedy():
    from dllm_decode.speculative import load_causal_lm

    target = load_causal_lm("tiny-ar")
    prompts = ["reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]", "sort [ Edgar Smith , Isabel Soto ]"]
    out = Sampler("deer", drafter="tiny-deer-drafter", draft_length=8, gen_length=32).generate(target, prompts)
    eos = target.eos_ids[0]
    for row, text in zip(out.ids, prompts):
        ids = torch.tensor(target.tokenizer(text, add_special_tokens=False).input_ids)
        assert row == greedy(target.module, ids, 32, eos)
    assert out.nfe < sum(out.gen_tokens)  # more than one token per target forward


@pytest.mark.parametrize("D", [2, 4])
def test_ssd_with_the_dual_cache_equals_stepwise_dual_cache_decoding(any_model, ragged_prompts, D):
    reference = Sampler("confidence", gen_length=16, block_length=4, cache="dual").generate(any_model, ragged_prompts)
    out = Sampler("ssd", gen_length=16, block_length=4, draft_length=D, cache="dual").generate(any_model, ragged_prompts)
    assert torch.equal(out.canvas, reference.canvas)
    assert sum(out.row_nfe) <= sum(reference.row_nfe)  # per row; rows out of phase may add batch forwards


def test_ssd_rejects_other_caches():
    with pytest.raises(ValueError, match="`loop='ssd'` needs a cache that lets a batch of candidate canvases.*"
                                         "got cache='prefix'"):
        Sampler("ssd", gen_length=16, block_length=8, cache="prefix")
    with pytest.raises(ValueError, match=r"got cache='dual' \(refresh=2\); use cache='none', or cache='dual' with "
                                         "refresh=None"):
        Sampler("ssd", gen_length=16, block_length=8, cache="dual", refresh=2)

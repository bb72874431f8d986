"""Shared fixtures: tiny random LLaDA and Dream models (the same code path as the 8B checkpoints)."""
from __future__ import annotations

import pytest
import torch

from dllm_decode import wrap
from dllm_decode.models import DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM

VOCAB, MASK, EOS, PAD = 100, 99, 98, 97
INIT_STD = 0.3  # peaked predictions: decisions are not near-ties that fp rounding could flip

torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to oversubscription


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts at one thread, whatever an earlier test (e.g. the CLI's `--threads`) left behind."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def peaked(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 2:
                p.normal_(0.0, INIT_STD)
    return module.eval()


def tiny_llada_module(seed: int = 0, **overrides) -> LLaDAModelLM:
    torch.manual_seed(seed)
    cfg = dict(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=128, vocab_size=VOCAB, embedding_size=VOCAB,
               mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD, max_sequence_length=256)
    return peaked(LLaDAModelLM(LLaDAConfig(**{**cfg, **overrides})))


def tiny_dream_module(seed: int = 0, **overrides) -> DreamModel:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, mask_token_id=MASK, pad_token_id=PAD,
               bos_token_id=PAD, eos_token_id=EOS)
    return peaked(DreamModel(DreamConfig(**{**cfg, **overrides})))


@pytest.fixture(scope="session")
def llada():
    return wrap(tiny_llada_module(), mask_id=MASK, eos_ids=(EOS,))


@pytest.fixture(scope="session")
def dream():
    return wrap(tiny_dream_module(), mask_id=MASK, eos_ids=(EOS,))


@pytest.fixture(params=["llada", "dream"])
def any_model(request, llada, dream):
    return {"llada": llada, "dream": dream}[request.param]


@pytest.fixture(scope="session")
def ragged_prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 90, (n,), generator=g) for n in (5, 11, 8)]

"""SparseD sparse attention: pattern selection, the torch block-sparse path, and end-to-end decoding."""
from __future__ import annotations


import pytest
import torch

from dllm_decode import Sampler
from dllm_decode.kernels import ATTENTION, SparseAttention
from dllm_decode.kernels.dense import dense_attention
from dllm_decode.kernels.pattern import block_importance, dense_block_mask, table_to_mask, top_blocks
from dllm_decode.kernels.sparse import SparseBackend, pattern_steps
from dllm_decode.kernels import sparse_torch
from dllm_decode.kernels.sparse_torch import block_sparse_reference, gathered_attention


def qkv(B: int, H: int, G: int, L: int, D: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, L, D, generator=g) for n in (H, G, G))


def key_padding(B: int, S: int, pads: tuple[int, ...]) -> torch.Tensor:
    """[B, 1, 1, S] bool: row b hides its first pads[b] keys (left padding)."""
    cols = torch.arange(S)
    return (cols[None, :] >= torch.tensor(pads)[:, None])[:, None, None, :]


def test_registered():
    assert ATTENTION["sparse"] is SparseAttention


def test_importance_is_the_block_mean_of_attention_probabilities():
    q, k, _ = qkv(1, 2, 1, 11, 8)
    probs = (q @ k.repeat_interleave(2, 1).transpose(-1, -2) / 8 ** 0.5).softmax(-1)
    got = block_importance(q, k, None, 4)  # blocks [0,4) [4,8) [8,11)
    assert got.shape == (1, 2, 3, 3)
    assert torch.allclose(got[0, 1, 2, 1], probs[0, 1, 8:11, 4:8].mean(), atol=1e-6)
    assert torch.allclose(got[0, 0, 0, 2], probs[0, 0, 0:4, 8:11].mean(), atol=1e-6)


def test_top_blocks_selects_prompt_and_canvas_separately():
    importance = torch.rand(2, 3, 5, 10)
    importance[..., 6:] = 0.0  # canvas blocks look unimportant: they are still chosen on their own
    table = top_blocks(importance, prompt_width=44, block=8, select=0.3)  # 6 prompt blocks, 4 canvas blocks
    n_prompt, n_canvas = int(6 * 0.3) + 1, int(4 * 0.3) + 1
    assert table.shape == (2, 3, 5, n_prompt + n_canvas)
    assert ((table < 6).sum(-1) == n_prompt).all() and ((table >= 6).sum(-1) == n_canvas).all()
    best = importance[..., :6].topk(n_prompt, -1).indices.sort(-1).values
    assert torch.equal(table[..., :n_prompt], best)
    assert table_to_mask(top_blocks(importance, 44, 8, 1.0), 10).all()  # select >= 1 keeps every block


@pytest.mark.parametrize("B,H,G,L,block,pads", [
    (1, 4, 4, 64, 16, (0,)),  # exact multiple, plain heads, no mask
    (2, 4, 2, 45, 16, (0, 7)),  # ragged tail, GQA, left-padded batch
    (3, 6, 2, 37, 8, (3, 0, 12)),
])
def test_gathered_attention_equals_dense_under_the_block_mask(B, H, G, L, block, pads):
    q, k, v = qkv(B, H, G, L, 16)
    mask = key_padding(B, L, pads) if any(pads) else None
    table = top_blocks(block_importance(q, k, mask, block), L // 2, block, 0.3)
    ref = block_sparse_reference(q, k, v, mask, table, block)
    assert torch.allclose(gathered_attention(q, k, v, mask, table, block), ref, atol=1e-5, rtol=1e-5)
    # the reference itself is dense attention restricted to the mask (not just equal to the fast path)
    dense_mask = dense_block_mask(table, mask, block, L, L)
    manual = (q @ k.repeat_interleave(H // G, 1).transpose(-1, -2) / 16 ** 0.5).masked_fill(~dense_mask, -torch.inf)
    assert torch.allclose(manual.softmax(-1) @ v.repeat_interleave(H // G, 1), ref, atol=1e-5)


def test_gathered_attention_with_a_per_query_mask():
    q, k, v = qkv(2, 4, 2, 30, 8, seed=3)
    mask = torch.rand(2, 1, 30, 30, generator=torch.Generator().manual_seed(0)) > 0.3
    mask[..., 24:] = True  # every row sees its canvas block, so no row is empty
    table = top_blocks(block_importance(q, k, mask, 8), 16, 8, 0.4)
    ref = block_sparse_reference(q, k, v, mask, table, 8)
    assert torch.allclose(gathered_attention(q, k, v, mask, table, 8), ref, atol=1e-5, rtol=1e-5)


def test_gathered_attention_in_chunks_equals_the_reference(monkeypatch):
    """Query blocks are processed in cache-sized chunks; a short last chunk and a masked batch still match."""
    q, k, v = qkv(2, 4, 2, 45, 16, seed=4)
    mask = key_padding(2, 45, (0, 7))
    table = top_blocks(block_importance(q, k, mask, 8), 22, 8, 0.3)
    scores_per_block = 4 * 8 * 8 * table.shape[-1]
    monkeypatch.setattr(sparse_torch, "_CHUNK_BYTES", 5 * scores_per_block)  # 2*4*6 = 48 blocks: 9 chunks of 5, one of 3
    ref = block_sparse_reference(q, k, v, mask, table, 8)
    assert torch.allclose(gathered_attention(q, k, v, mask, table, 8), ref, atol=1e-5, rtol=1e-5)


def test_gathered_attention_gives_rows_without_keys_zero_as_sdpa_does():
    q, k, v = qkv(1, 2, 1, 16, 8, seed=6)
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    mask[0, 0, 5] = False  # query 5 sees no key at all
    table = top_blocks(block_importance(q, k, mask, 4), 8, 4, 0.5)
    got = gathered_attention(q, k, v, mask, table, 4)
    assert torch.allclose(got, block_sparse_reference(q, k, v, mask, table, 4), atol=1e-5, rtol=1e-5)
    assert torch.equal(got[0, :, 5], torch.zeros(2, 8))


def test_gathered_attention_keeps_the_input_dtype_and_scores_in_fp32():
    q, k, v = qkv(1, 2, 2, 40, 16, seed=7)
    table = top_blocks(block_importance(q, k, None, 8), 24, 8, 0.3)
    got = gathered_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, table, 8)
    assert got.dtype == torch.bfloat16
    ref = block_sparse_reference(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), None, table, 8)
    assert torch.allclose(got.float(), ref, atol=1e-2)  # only the final rounding to bf16 differs


def table_width(backend: SparseBackend) -> int:
    return backend.tables[0].shape[-1]


def test_workspace_is_reused_across_calls():
    backend = SparseBackend(SparseAttention(sparse_block=8), full_steps=1, prompt_width=8, batch=1)
    q, k, v = qkv(1, 2, 2, 24, 8)
    backend.begin(0, torch.zeros(1, dtype=torch.bool))
    backend(q, k, v, None, 0)  # the pattern step
    backend.begin(1, torch.zeros(1, dtype=torch.bool))
    first = backend(q, k, v, None, 0)
    shapes = {"k": (1, 2, 24, 8), "out": (2 * 3, 8, 8), "scores": (2 * 3, 8, 8 * table_width(backend))}
    pointers = {name: backend.workspace.get(name, shape, q).data_ptr() for name, shape in shapes.items()}
    assert torch.equal(backend(q, k, v, None, 0), first)
    assert {name: backend.workspace.get(name, shape, q).data_ptr() for name, shape in shapes.items()} == pointers


def test_backend_is_dense_before_the_pattern_step_and_follows_dropped_rows():
    q, k, v = qkv(3, 2, 1, 20, 8, seed=5)
    backend = SparseBackend(SparseAttention(select=0.2, sparse_block=4), full_steps=2, prompt_width=12, batch=3)
    backend.begin(0, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(backend(q, k, v, None, 0), dense_attention(q, k, v, None))
    assert backend.pattern_calls == 0
    backend.begin(1, torch.zeros(3, dtype=torch.bool))
    backend(q, k, v, None, 0)  # step full_steps - 1: pattern chosen here, output still dense
    assert backend.pattern_calls == 1
    table = top_blocks(block_importance(q, k, None, 4), 12, 4, 0.2)
    backend.begin(2, torch.tensor([False, True, False]))  # row 1 finished: the forward carries rows 0 and 2
    got = backend(q[[0, 2]], k[[0, 2]], v[[0, 2]], None, 0)
    assert torch.allclose(got, block_sparse_reference(q[[0, 2]], k[[0, 2]], v[[0, 2]], None, table[[0, 2]], 4),
                          atol=1e-5)
    assert backend.pattern_calls == 1


def test_full_attention_steps_follow_the_step_budget_or_the_canvas_length():
    budget = Sampler("confidence", gen_length=32, block_length=8, steps=16, attention="sparse", skip=0.2).plan
    assert pattern_steps(budget, 32, 0.2) == int(0.2 * 16) + 1
    free = Sampler("threshold", gen_length=32, block_length=8, attention="sparse", skip=0.2).plan
    assert pattern_steps(free, 32, 0.2) == int(0.2 * 32) + 1


def prompts() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)  # a random model can predict the mask id: these prompts avoid it
    return [torch.randint(0, 90, (n,), generator=g) for n in (27, 40, 19)]


@pytest.mark.parametrize("name,opts", [
    ("confidence", dict(steps=8)),
    ("confidence", dict(steps=8, cfg_scale=1.0)),
    ("threshold", dict(threshold=0.5)),
])
def test_keeping_every_block_gives_dense_tokens(llada, name, opts):
    common = dict(gen_length=16, block_length=8, **opts)
    dense = Sampler(name, **common).generate(llada, prompts())
    sparse = Sampler(name, attention="sparse", select=1.0, sparse_block=8, skip=0.0, sparse_backend="torch",
                     **common).generate(llada, prompts())
    assert torch.equal(dense.canvas, sparse.canvas)
    assert dense.nfe == sparse.nfe


def test_pattern_is_chosen_once_per_layer(llada, monkeypatch):
    made: list[SparseBackend] = []
    original = SparseAttention.new_request

    def spy(self, state, plan):
        made.append(original(self, state, plan))
        return made[-1]

    monkeypatch.setattr(SparseAttention, "new_request", spy)
    Sampler("confidence", gen_length=16, block_length=8, steps=8, attention="sparse", select=0.5,
            sparse_block=8).generate(llada, prompts())
    assert made[0].pattern_calls == llada.module.config.n_layers
    assert made[0].full_steps == int(0.2 * 8) + 1


def test_rejects_caches_and_loops_it_cannot_serve():
    with pytest.raises(ValueError, match="`attention='sparse'` needs a cache that recomputes every query row against "
                                         "every key.*got cache='dual'"):
        Sampler("confidence", gen_length=16, block_length=8, attention="sparse", cache="dual")
    with pytest.raises(ValueError, match="`attention='sparse'` cannot work with a loop that spends its forwards its "
                                         "own way.*got loop='ssd'"):
        Sampler("ssd", gen_length=16, block_length=8, attention="sparse")


@pytest.mark.parametrize("kwargs,match", [
    (dict(select=0), "`select` must be a number > 0"),
    (dict(sparse_block=0), "`sparse_block` must be an int >= 1"),
    (dict(skip=1.0), r"`skip` must be a number in \[0, 1\)"),
    (dict(sparse_backend="cuda"), "`sparse_backend` must be one of"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler("confidence", attention="sparse", **kwargs)


def test_a_cache_subset_of_queries_is_refused_at_call_time():
    backend = SparseBackend(SparseAttention(), full_steps=1, prompt_width=4, batch=1)
    q, k, v = qkv(1, 2, 2, 8, 8)
    with pytest.raises(ValueError, match="needs a query for every key row"):
        backend(q[:, :, :4], k, v, None, 0)

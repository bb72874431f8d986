"""The Triton block-sparse flash-attention kernel against its plain-PyTorch reference.

Without a GPU the kernel runs in Triton's interpreter. TRITON_INTERPRET=1 must be set before triton
is first imported (`triton.jit` reads it at decoration time, also for `tl.zeros` and friends), and
importing the models imports triton through torch; so when this process was not started with it,
one test re-runs this file in a child process that is. The interpreter is slow: shapes are tiny.
Skipped only when triton is not installed (`pip install "triton>=3.0"`).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # effective only if triton is not imported yet
pytest.importorskip("triton")
import triton.language as tl  # noqa: E402
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from dllm_decode import Sampler  # noqa: E402
from dllm_decode.kernels.pattern import block_importance, top_blocks  # noqa: E402
from dllm_decode.kernels.sparse_torch import block_sparse_reference, gathered_attention  # noqa: E402
from dllm_decode.kernels.sparse_triton import triton_block_sparse_attention  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNNABLE = DEVICE == "cuda" or isinstance(tl.zeros, InterpretedFunction)
in_child = pytest.mark.skipif(not RUNNABLE, reason="runs in the interpreter child process (see the next test)")


@pytest.mark.skipif(RUNNABLE, reason="this process can run the kernel itself")
def test_kernel_tests_in_an_interpreter_process():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], env=env,
                           cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]


def qkv(B: int, H: int, G: int, L: int, D: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, n, L, D, generator=g).to(DEVICE) for n in (H, G, G))


@in_child
@pytest.mark.parametrize("B,H,G,L,D,pads", [
    (2, 4, 2, 45, 16, (0, 7)),  # ragged tail (45 = 2*16 + 13), GQA, left-padded batch
    (1, 2, 2, 32, 24, (0,)),  # exact multiple, head dim not a power of two, no mask
])
def test_kernel_equals_dense_attention_under_the_block_mask(B, H, G, L, D, pads):
    q, k, v = qkv(B, H, G, L, D)
    mask = None
    if any(pads):
        mask = (torch.arange(L)[None, :] >= torch.tensor(pads)[:, None])[:, None, None, :].to(DEVICE)
    table = top_blocks(block_importance(q, k, mask, 16), 20, 16, 0.3)
    ref = block_sparse_reference(q, k, v, mask, table, 16)
    got = triton_block_sparse_attention(q, k, v, mask, table, 16)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(got, gathered_attention(q, k, v, mask, table, 16), atol=1e-5, rtol=1e-5)


@in_child
def test_kernel_rejects_what_it_cannot_run():
    q, k, v = qkv(1, 2, 2, 16, 16)
    table = torch.zeros(1, 2, 2, 1, dtype=torch.long, device=DEVICE)
    with pytest.raises(ValueError, match="`sparse_block` must be a power of two >= 16"):
        triton_block_sparse_attention(q, k, v, None, table, 8)
    with pytest.raises(ValueError, match="takes a key-padding mask"):
        triton_block_sparse_attention(q, k, v, torch.ones(1, 1, 16, 16, dtype=torch.bool, device=DEVICE),
                                      table[:, :, :1], 16)


@in_child
def test_forced_triton_backend_gives_dense_tokens_when_every_block_is_kept(llada):
    prompt = torch.randint(0, 90, (21,), generator=torch.Generator().manual_seed(4))
    common = dict(gen_length=16, block_length=16, steps=2)
    dense = Sampler("confidence", **common).generate(llada, prompt)
    sparse = Sampler("confidence", attention="sparse", select=1.0, sparse_block=16, skip=0.0,
                     sparse_backend="triton", **common).generate(llada, prompt)
    assert torch.equal(dense.canvas, sparse.canvas)

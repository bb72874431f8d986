"""GPU benchmark: the Triton block-sparse kernel against dense SDPA / FlashAttention at 8k-64k context.

    python benchmarks/bench_sparse_gpu.py                      # LLaDA-8B attention shape, bf16
    python benchmarks/bench_sparse_gpu.py --lengths 8192 65536 --kv-heads 8 --dtype fp16

Needs a CUDA GPU (and `pip install triton`); on a machine without one it says so and exits. One
attention call per length: q [1, H, S, D], k/v [1, G, S, D], a SparseD pattern of block 128 keeping
`int(n * select) + 1` prompt blocks and `int(n * select) + 1` canvas blocks per query block (the
kernel's cost depends only on how many blocks are kept, so the pattern is drawn from random
importances rather than computed). Compared: SDPA (PyTorch's flash backend), `flash_attn` when
installed, compiled FlexAttention with the same block mask when `--flex`, and the Triton kernel.
The kernel is checked against the torch gathered path at the first length before timing.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch
import torch.nn.functional as F

from dllm_decode.kernels.pattern import num_blocks, top_blocks


def cuda_ms(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def contenders(q, k, v, table, block: int, flex: bool) -> dict[str, Callable[[], object]]:
    from dllm_decode.kernels.sparse_triton import triton_block_sparse_attention

    gqa = q.shape[1] != k.shape[1]
    fns = {"SDPA (flash)": lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa),
           "triton sparse": lambda: triton_block_sparse_attention(q, k, v, None, table, block)}
    try:
        from flash_attn import flash_attn_func  # [B, S, H, D] layout

        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        fns["flash_attn"] = lambda: flash_attn_func(qt, kt, vt)
    except ImportError:
        pass
    if flex:
        fns["flex sparse (compiled)"] = flex_call(q, k, v, table, block)
    return fns


def flex_call(q, k, v, table, block: int) -> Callable[[], object]:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, H, nq, K = table.shape
    nk = num_blocks(k.shape[2], block)
    indices = torch.cat([table, table.new_zeros(B, H, nq, nk - K)], -1).int()  # kv_indices must be nk wide
    bm = BlockMask.from_kv_blocks(torch.full((B, H, nq), K, dtype=torch.int32, device=q.device), indices,
                                  BLOCK_SIZE=block, seq_lengths=(q.shape[2], k.shape[2]))
    compiled = torch.compile(flex_attention)
    return lambda: compiled(q, k, v, block_mask=bm, enable_gqa=q.shape[1] != k.shape[1])


def check(q, k, v, table, block: int) -> float:
    from dllm_decode.kernels.sparse_torch import gathered_attention
    from dllm_decode.kernels.sparse_triton import triton_block_sparse_attention

    ref = gathered_attention(q.float(), k.float(), v.float(), None, table, block)
    return (triton_block_sparse_attention(q, k, v, None, table, block).float() - ref).abs().max().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768, 65536])
    p.add_argument("--gen", type=int, default=256, help="canvas length at the end of the sequence")
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32, help="32 = LLaDA-8B (MHA); 8 for a GQA model")
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--select", type=float, default=0.3)
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    p.add_argument("--flex", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("bench_sparse_gpu.py needs a CUDA GPU and found none: it times the Triton block-sparse kernel "
              "against SDPA/FlashAttention at 8k-64k. On CPU use benchmarks/bench_sparse.py.")
        sys.exit(0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.dtype}, H={args.heads} "
          f"G={args.kv_heads} D={args.head_dim}, block {args.block}, select {args.select}")
    for i, S in enumerate(args.lengths):
        g = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(1, args.heads, S, args.head_dim, device="cuda", dtype=dtype, generator=g)
        k, v = torch.randn(2, 1, args.kv_heads, S, args.head_dim, device="cuda", dtype=dtype, generator=g)
        nq = num_blocks(S, args.block)
        importance = torch.rand(1, args.heads, nq, nq, device="cuda", generator=g)
        table = top_blocks(importance, S - args.gen, args.block, args.select)
        if i == 0:
            print(f"  max |triton - torch reference| at S={S}: {check(q, k, v, table, args.block):.2e}")
        times = {name: cuda_ms(fn) for name, fn in contenders(q, k, v, table, args.block, args.flex).items()}
        base = times["SDPA (flash)"]
        cols = "  ".join(f"{name} {ms:8.2f} ms ({base / ms:4.2f}x)" for name, ms in times.items())
        print(f"S={S:6d} kept {table.shape[-1]}/{nq} blocks  {cols}")


if __name__ == "__main__":
    main()

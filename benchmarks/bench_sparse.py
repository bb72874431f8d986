"""CPU benchmark: SparseD's torch path (gathered key blocks + SDPA) against dense SDPA, one run.

    python benchmarks/bench_sparse.py                      # prompt 4096, gen 256, select 0.3, block 128
    python benchmarks/bench_sparse.py --flex               # also time compiled FlexAttention (minutes to compile)

Prints (1) one attention call (one layer) and (2) one denoising step of a random LLaDA (the loop's
forward: every row in, logits for one 32-column block out), dense vs sparse after the pattern step,
plus the one-off cost of the pattern step. Timings are the minimum over interleaved repeats (the
machine is shared). A step only speeds up by the share of its time spent in attention: the config
here is attention-heavy on purpose (d_model 256, two 128-wide heads); the share is printed.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from dllm_decode import wrap
from dllm_decode.kernels import SparseAttention
from dllm_decode.kernels.dense import dense_attention
from dllm_decode.kernels.pattern import block_importance, num_blocks, top_blocks
from dllm_decode.kernels.sparse import SparseBackend
from dllm_decode.kernels.sparse_torch import Workspace, gathered_attention
from dllm_decode.models import LLaDAConfig, LLaDAModelLM


def best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Minimum (wall, CPU) seconds per call of each fn, repeats interleaved so load spikes hit all alike.

    CPU time (all threads of this process) is reported beside wall time because the machine is shared
    with background jobs: wall time then measures the neighbours as much as the kernel.
    """
    times = {name: (float("inf"), float("inf")) for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[name] = (min(times[name][0], wall), min(times[name][1], cpu))
    return times


def report(times: dict[str, tuple[float, float]], names: list[str]) -> None:
    dense_wall, dense_cpu = times["dense SDPA"]
    for name in names:
        wall, cpu = times[name]
        print(f"  {name:30s} wall {wall * 1e3:8.1f} ms ({dense_wall / wall:4.2f}x)   "
              f"cpu {cpu * 1e3:8.1f} ms ({dense_cpu / cpu:4.2f}x vs dense)")


def attention_call(args: argparse.Namespace) -> None:
    S = args.prompt + args.gen
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, args.heads, S, args.head_dim, generator=g)
    k, v = torch.randn(2, 1, args.heads, S, args.head_dim, generator=g)
    table = top_blocks(block_importance(q, k, None, args.block), args.prompt, args.block, args.select)
    ws = Workspace()
    fns = {"dense SDPA": lambda: dense_attention(q, k, v, None),
           "sparse torch": lambda: gathered_attention(q, k, v, None, table, args.block, ws),
           "pattern (importance + top-k)": lambda: top_blocks(block_importance(q, k, None, args.block),
                                                              args.prompt, args.block, args.select)}
    if args.flex:
        fns["flex compiled"] = flex_call(q, k, v, table, args.block)
    times = best(fns, args.repeats)
    kept = table.shape[-1] / num_blocks(S, args.block)
    print(f"\n(1) one attention call: B=1 H={args.heads} D={args.head_dim} S={S}, block {args.block}, "
          f"{table.shape[-1]}/{num_blocks(S, args.block)} key blocks kept ({kept:.0%})")
    report(times, list(times))


def flex_call(q, k, v, table, block):
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, H, nq, K = table.shape
    keep = torch.zeros(B, H, nq, nq, dtype=torch.bool).scatter_(3, table, True)
    indices = torch.cat([table, table.new_zeros(B, H, nq, nq - K)], -1).int()  # kv_indices must be nk wide
    bm = BlockMask.from_kv_blocks(torch.full((B, H, nq), K, dtype=torch.int32), indices, BLOCK_SIZE=block,
                                  mask_mod=lambda b, h, qi, kv: keep[b, h, qi // block, kv // block],
                                  seq_lengths=(q.shape[2], k.shape[2]))
    compiled = torch.compile(flex_attention)
    start = time.perf_counter()
    compiled(q, k, v, block_mask=bm)
    print(f"  (flex compile + first call: {time.perf_counter() - start:.0f} s)")
    return lambda: compiled(q, k, v, block_mask=bm)


def model_step(args: argparse.Namespace) -> None:
    cfg = LLaDAConfig(d_model=args.heads * args.head_dim, n_heads=args.heads, n_layers=args.layers,
                      mlp_hidden_size=args.mlp, vocab_size=1024, embedding_size=1024, mask_token_id=1023,
                      eos_token_id=1022, pad_token_id=1021, max_sequence_length=args.prompt + args.gen)
    torch.manual_seed(0)
    model = wrap(LLaDAModelLM(cfg).eval(), mask_id=1023, eos_ids=(1022,), pack=not args.no_pack)
    S = args.prompt + args.gen
    x = torch.randint(0, 1000, (1, S))
    x[:, args.prompt:] = 1023
    rows = torch.arange(args.prompt, args.prompt + 32)[None]  # logits for one 32-column block
    options = SparseAttention(select=args.select, sparse_block=args.block, skip=0.0, sparse_backend="torch")
    backend = SparseBackend(options, full_steps=1, prompt_width=args.prompt, batch=1)
    done = torch.zeros(1, dtype=torch.bool)
    backend.begin(0, done)
    with torch.no_grad():
        pattern = time.perf_counter()
        model(x, logits_for=rows, attention=backend)  # the pattern step: dense + importance per layer
        pattern = time.perf_counter() - pattern
        backend.begin(1, done)
        no_attention = lambda q, k, v, mask, layer: q  # noqa: E731  (what the step costs without attention)
        times = best({"dense SDPA": lambda: model(x, logits_for=rows),
                      "sparse torch": lambda: model(x, logits_for=rows, attention=backend),
                      "no attention": lambda: model(x, logits_for=rows, attention=no_attention)}, args.repeats)
    share = 1 - times["no attention"][1] / times["dense SDPA"][1]
    print(f"\n(2) one denoising step: LLaDA d_model={cfg.d_model} heads={args.heads}x{args.head_dim} "
          f"mlp={args.mlp} layers={args.layers}, prompt {args.prompt} + gen {args.gen}, select {args.select}, "
          f"block {args.block}; attention is {share:.0%} of a dense step")
    report(times, ["dense SDPA", "sparse torch"])
    print(f"  {'pattern step (once)':30s} wall {pattern * 1e3:8.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", type=int, default=4096)
    p.add_argument("--gen", type=int, default=256)
    p.add_argument("--select", type=float, default=0.3)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--mlp", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--flex", action="store_true", help="also time compiled FlexAttention with the block mask")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-pack", action="store_true", help="plain F.linear instead of packed CPU linears")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'plain' if args.no_pack else 'packed'} linears")
    attention_call(args)
    model_step(args)


if __name__ == "__main__":
    main()

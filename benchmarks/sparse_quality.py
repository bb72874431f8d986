"""Quality of `attention="sparse"` against dense on the embedded tiny models (waiting-line suite).

    python benchmarks/sparse_quality.py                        # tiny-llada, select 0.5, block 8
    python benchmarks/sparse_quality.py --models tiny-llada tiny-dream --select 0.3

The tiny models' contexts are short (11-23-token prompt + 32-token canvas), so blocks of 8 tokens
stand in for SparseD's 32-128. Decoding: LLaDA low-confidence top-k ("confidence"), gen_length 32,
block_length 8 (`--block-length`), one token per step; score = exact-match accuracy in points (0-100) on
`make_suite("waiting-line", seed=1234, per_length=5, fmt="compact")`. Goal: sparse within 1 point.
"""
from __future__ import annotations

import argparse
import time

import torch

from dllm_decode import Sampler, load_model
from dllm_decode.evals.tasks import make_suite, score
from dllm_decode.kernels.pattern import num_blocks, top_blocks
from dllm_decode.models.adapter import DiffusionLM
from dllm_decode.prompts import encode_prompts


def accuracy(model: DiffusionLM, sampler: Sampler, samples: list, batch: int) -> tuple[float, float]:
    """(score in points, seconds) over `samples`, decoded `batch` prompts at a time."""
    hits, start = 0.0, time.perf_counter()
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        result = sampler.generate(model, [s.prompt for s in chunk])
        hits += sum(score(s, text) for s, text in zip(chunk, result.text))
    return 100 * hits / len(samples), time.perf_counter() - start


def kept_share(model: DiffusionLM, prompts: list[str], batch: int, block: int, select: float, gen: int) -> float:
    """Mean share of key blocks each query block keeps after the pattern step, over the decoded batches.

    Batches are left-padded to their longest prompt, so the prompt segment counts that prompt's blocks;
    the count K comes from `top_blocks` itself (importance ties do not change how many are kept).
    """
    lengths = [len(ids) for ids in encode_prompts(model, prompts, chat_template=False)]  # as the Sampler encodes them
    shares = []
    for i in range(0, len(prompts), batch):
        width = max(lengths[i:i + batch])
        n_keys = num_blocks(width + gen, block)
        shares.append(top_blocks(torch.zeros(1, 1, 1, n_keys), width, block, select).shape[-1] / n_keys)
    return sum(shares) / len(shares)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["tiny-llada"])
    p.add_argument("--select", type=float, default=0.5)
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--skip", type=float, default=0.2)
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--block-length", type=int, default=8, choices=(8, 16, 32),
                   help="decoding block (semi-autoregressive); 32 = one block over the canvas, as on the cards")
    args = p.parse_args()
    samples = make_suite("waiting-line", seed=1234, per_length=5, fmt="compact")
    common = dict(gen_length=32, block_length=args.block_length, steps=32, chat_template=False)
    for name in args.models:
        model = load_model(name)
        dense, t_dense = accuracy(model, Sampler("confidence", **common), samples, args.batch)
        sparse, t_sparse = accuracy(model, Sampler("confidence", attention="sparse", select=args.select,
                                                   sparse_block=args.block, skip=args.skip, **common),
                                    samples, args.batch)
        kept = kept_share(model, [s.prompt for s in samples], args.batch, args.block, args.select, common["gen_length"])
        print(f"{name}: {len(samples)} samples  dense {dense:5.1f}  sparse(select={args.select}, block={args.block}, "
              f"skip={args.skip}, decoding block {args.block_length}) {sparse:5.1f}  diff {sparse - dense:+.1f} points  "
              f"key blocks kept {kept:.0%}  (time {t_dense:.0f} s vs {t_sparse:.0f} s)")


if __name__ == "__main__":
    main()

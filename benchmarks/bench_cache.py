"""KV cache strategies side by side: wall time, per-step time and recomputed rows against no cache.

A random mid-size LLaDA (d_model 512, 8 layers, 8 heads, MLP 1376, vocab 32000), prompt 512 tokens,
block 32, one token per step (`Sampler("confidence")` with steps = gen_length), batch 1 and 8. Rows
fed is the NFE-weighted count of query rows the transformer ran (B x fed rows, summed over forwards),
read with a forward pre-hook; "match" is the share of canvas tokens equal to the no-cache run (random
weights make near-ties common, so it says little about quality: see docs/results/caches.md).

    python benchmarks/bench_cache.py                 # gen 64 and 256, batch 1 and 8
    python benchmarks/bench_cache.py --quick         # gen 64, batch 1, one repeat
    python benchmarks/bench_cache.py --gens 256 --batches 1 --threads 2
    python benchmarks/bench_cache.py --quick --no-pack  # plain F.linear (MKL) instead of packed linears
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dllm_decode import Sampler, wrap
from dllm_decode.models import LLaDAConfig, LLaDAModelLM
from dllm_decode.models.layers import LogitsOutput

STRATEGIES = [("none", {}), ("prefix", {}), ("dual", {}), ("delayed", {}),
              ("delayed", {"delay_mode": "greedy"}), ("windowed", {})]
MASK, EOS = 31999, 31998


def build_model(seed: int = 0, pack: bool = True):
    torch.manual_seed(seed)
    cfg = LLaDAConfig(d_model=512, n_layers=8, n_heads=8, mlp_hidden_size=1376, vocab_size=32000,
                      embedding_size=32000, max_sequence_length=2048, mask_token_id=MASK, eos_token_id=EOS,
                      pad_token_id=EOS)
    return wrap(LLaDAModelLM(cfg).eval(), mask_id=MASK, eos_ids=(EOS,), pack=pack)


class FullSequenceHead(torch.nn.Module):
    """The published loops' no-cache forward: the LM head on every row, then the block's rows picked.

    LLaDA's and Fast-dLLM's `generate` take `model(x).logits` over the whole sequence each step; our
    loop runs the head on the read columns only. Timing both in one run says how much of the published
    ratios comes from that baseline rather than from the cache.
    """

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, logits_for=None, **kwargs):
        logits = self.inner(input_ids, logits_for=None, **kwargs).logits
        if logits_for is not None:
            logits = logits.gather(1, logits_for[..., None].expand(-1, -1, logits.shape[-1]))
        return LogitsOutput(logits)


class RowCounter:
    """Counts query rows fed to the transformer (B x L per forward)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.rows = 0
        module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        ids = args[0] if args else kwargs["input_ids"]
        self.rows += ids.numel()


def run(model, counter: RowCounter, sampler: Sampler, prompts: torch.Tensor, repeats: int):
    warm = Sampler("confidence", gen_length=sampler.decode.block_length, cache=sampler.decode.cache)
    warm.generate(model, prompts)  # short warm-up (allocator, first-call overheads), excluded
    times, result = [], None
    for _ in range(repeats):
        counter.rows = 0
        result = sampler.generate(model, prompts)
        times.append(result.wall_time)
    return statistics.median(times), counter.rows, result


def label(name: str, opts: dict) -> str:
    return name + (f"-{opts['delay_mode']}" if "delay_mode" in opts else ("-decode" if name == "delayed" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gens", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt", type=int, default=512)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="gen 64, batch 1, one repeat")
    parser.add_argument("--no-pack", action="store_true", help="plain F.linear instead of packed CPU linears")
    args = parser.parse_args()
    if args.quick:
        args.gens, args.batches, args.repeats = [64], [1], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(pack=not args.no_pack)
    counter = RowCounter(model.module)
    reference_none = dataclasses.replace(model, module=FullSequenceHead(model.module))
    g = torch.Generator().manual_seed(0)
    print(f"random LLaDA d512 x 8 layers, vocab 32000; prompt {args.prompt}, block {args.block}, one token per step; "
          f"threads {torch.get_num_threads()}, median of {args.repeats}, "
          f"{'plain' if args.no_pack else 'packed'} linears")
    print("speedup: over our no-cache loop (head on the block's masked columns); vs ref: over the published "
          "loops' no-cache forward (head on every row), timed in the same run")
    header = (f"{'gen':>4} {'B':>2} {'cache':<15} {'wall s':>8} {'ms/step':>8} {'speedup':>7} {'vs ref':>7} {'NFE':>4} "
              f"{'rows fed':>10} {'rows/none':>9} {'cache MB':>8} {'match':>6}")
    print(header)
    print("-" * len(header))
    for gen in args.gens:
        for batch in args.batches:
            prompts = torch.randint(0, 31000, (batch, args.prompt), generator=g)
            ref_wall, _, ref = run(reference_none, counter, Sampler("confidence", gen_length=gen, block_length=args.block),
                                   prompts, args.repeats)
            print(f"{gen:>4} {batch:>2} {'none (ref head)':<15} {ref_wall:>8.2f} {1000 * ref_wall / ref.nfe:>8.1f}", flush=True)
            base = None
            for name, opts in STRATEGIES:
                sampler = Sampler("confidence", gen_length=gen, block_length=args.block, cache=name, **opts)
                wall, rows, result = run(model, counter, sampler, prompts, args.repeats)
                if base is None:
                    base = (wall, rows, result.canvas)
                match = (result.canvas == base[2]).float().mean().item()
                print(f"{gen:>4} {batch:>2} {label(name, opts):<15} {wall:>8.2f} {1000 * wall / result.nfe:>8.1f} "
                      f"{base[0] / wall:>6.2f}x {ref_wall / wall:>6.2f}x {result.nfe:>4} {rows:>10} {rows / base[1]:>9.3f} "
                      f"{result.cache_bytes / 2**20:>8.1f} {match:>6.1%}", flush=True)


if __name__ == "__main__":
    main()

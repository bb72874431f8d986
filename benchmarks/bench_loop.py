"""Loop overhead per step as a share of the forward, and batch-8 over batch-1 throughput.

    python benchmarks/bench_loop.py                    # d_model 512, 4 layers, vocab 126464, prompt 256, gen 256
    python benchmarks/bench_loop.py --steps 64 --batches 1 8

Forward time is measured inside `generate` by timing every model call (wall clock, synchronised);
overhead = (generate wall time - forward time) / forward time. Warm-up runs are excluded.
"""
from __future__ import annotations

import argparse
import time

import torch

from dllm_decode import Sampler, wrap
from dllm_decode.models import LLaDAConfig, LLaDAModelLM


class TimedModule(torch.nn.Module):
    """Wraps a native module and accumulates the wall time of its forwards."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seconds, self.calls = inner, 0.0, 0
        self.config = inner.config

    def forward(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=126464)
    parser.add_argument("--prompt", type=int, default=256)
    parser.add_argument("--gen", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="step budget (gen/steps tokens per step)")
    parser.add_argument("--sampler", default="confidence")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = LLaDAConfig(d_model=args.d_model, n_heads=8, n_layers=args.layers, mlp_hidden_size=4 * args.d_model,
                      vocab_size=args.vocab, embedding_size=args.vocab, max_sequence_length=4096)
    inner = LLaDAModelLM(cfg).eval().requires_grad_(False)
    timed = TimedModule(inner)
    model = wrap(inner, mask_id=cfg.mask_token_id, eos_ids=(cfg.eos_token_id,))
    model.module = timed  # time every forward the loop makes
    model.native = True
    opts = dict(gen_length=args.gen, block_length=args.block)
    if Sampler(args.sampler).rule.uses_steps:
        opts["steps"] = args.steps
    sampler = Sampler(args.sampler, logits_eos_inf=True, **opts)
    print(f"LLaDA d_model {args.d_model}, {args.layers} layers, vocab {args.vocab}, prompt {args.prompt}, "
          f"gen {args.gen}, block {args.block}, sampler {args.sampler} {opts}; torch threads {torch.get_num_threads()}")
    print(f"{'batch':>5} {'steps':>5} {'wall s':>8} {'fwd ms/step':>11} {'loop ms/step':>12} {'overhead':>8} {'tok/s':>8}")
    rates = {}
    for batch in args.batches:
        prompts = torch.randint(0, 1000, (batch, args.prompt))
        sampler.generate(model, prompts[:, : args.prompt // 4])  # warm-up
        timed.seconds, timed.calls = 0.0, 0
        result = sampler.generate(model, prompts)
        fwd = timed.seconds / timed.calls
        loop = (result.wall_time - timed.seconds) / timed.calls
        rates[batch] = sum(result.gen_tokens) / result.wall_time
        print(f"{batch:>5} {result.steps:>5} {result.wall_time:>8.2f} {1e3 * fwd:>11.1f} {1e3 * loop:>12.2f} "
              f"{loop / fwd:>8.1%} {rates[batch]:>8.1f}")
    if 1 in rates and len(rates) > 1:
        for batch, rate in rates.items():
            if batch != 1:
                print(f"tokens/s of batch {batch} over batch 1: {rate / rates[1]:.2f}x")


if __name__ == "__main__":
    main()

"""Waiting Line scores of each KV cache strategy against no cache, on the tiny zoo models.

For every model and cache: the same sampler (one token per step and the Fast-dLLM threshold rule),
gen_length 32, block_length 8, on `make_suite("waiting-line", seed=1234, per_length=5, fmt="compact")`;
prints a markdown table (score x100, difference to no cache, NFE, canvas agreement with no cache, wall
time) to paste into docs/results/caches.md. The target: every approximate strategy within 1 point.

    python benchmarks/cache_quality.py                       # tiny-llada and tiny-dream
    python benchmarks/cache_quality.py --models tiny-llada --batch 16 --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from dllm_decode import Sampler, load_model
from dllm_decode.evals.tasks import make_suite, score

CACHES = [("none", {}), ("prefix", {}), ("dual", {}), ("delayed", {}), ("delayed", {"delay_mode": "greedy"}),
          ("windowed", {})]
RULES = [("confidence", {}), ("threshold", {"threshold": 0.9})]


def evaluate(model, sampler: Sampler, samples, batch: int) -> tuple[list[float], int, torch.Tensor, float]:
    """(per-sample scores, total NFE, canvases [N, G], seconds) over `samples`, `batch` prompts per call."""
    scores, nfe, canvases, start = [], 0, [], time.perf_counter()
    for i in range(0, len(samples), batch):
        chunk = samples[i:i + batch]
        result = sampler.generate(model, [s.prompt for s in chunk])
        scores += [score(s, text) for s, text in zip(chunk, result.text)]
        nfe += sum(result.row_nfe)
        canvases.append(result.canvas)
    return scores, nfe, torch.cat(canvases), time.perf_counter() - start


def label(name: str, opts: dict) -> str:
    return name + (f"-{opts['delay_mode']}" if "delay_mode" in opts else ("-decode" if name == "delayed" else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-llada", "tiny-dream"])
    parser.add_argument("--per-length", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1234, help="task-instance seed (1234: the cards' held-out set)")
    parser.add_argument("--caches", nargs="+", default=None, help="only these (no cache always runs: the reference)",
                        choices=[label(c, o) for c, o in CACHES if c != "none"])
    parser.add_argument("--rules", nargs="+", default=None, choices=[r for r, _ in RULES])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = make_suite("waiting-line", seed=args.seed, per_length=args.per_length, fmt="compact")
    print(f"Waiting Line, {len(samples)} samples (seed {args.seed}, per_length {args.per_length}, compact); "
          "gen_length 32, block_length 8; worse / better: samples scoring below / above no cache\n")
    print("| model | rule | cache | score | diff | worse / better | NFE | canvas = none | time s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        model = load_model(name)
        for rule, rule_opts in RULES:
            if args.rules and rule not in args.rules:
                continue
            base = None
            for cache, opts in CACHES:  # `none` always runs first: it is the reference
                if args.caches and cache != "none" and label(cache, opts) not in args.caches:
                    continue
                sampler = Sampler(rule, gen_length=32, block_length=8, cache=cache, **rule_opts, **opts)
                scores, nfe, canvas, seconds = evaluate(model, sampler, samples, args.batch)
                base = base or (scores, canvas)
                value, diff = 100 * sum(scores) / len(scores), 100 * (sum(scores) - sum(base[0])) / len(scores)
                worse = sum(a < b for a, b in zip(scores, base[0]))
                better = sum(a > b for a, b in zip(scores, base[0]))
                agree = (canvas == base[1]).float().mean().item()
                print(f"| {name} | {rule} | {label(cache, opts)} | {value:.1f} | {diff:+.1f} | {worse} / {better} | "
                      f"{nfe} | {agree:.1%} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()

"""Shared by the ablation scripts: decode a config over a small task suite, then plot the frontier.

Only the public API is used: `Sampler`, `load_model`, the task suite and the report's `frontier_plot`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from dllm_decode import Sampler, load_model
from dllm_decode.evals import frontier_plot, markdown_table
from dllm_decode.evals.tasks import make_suite, score


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="tiny-llada", help="checkpoint directory or zoo name")
    p.add_argument("--suite", default="waiting-line")
    p.add_argument("--per-length", type=int, default=2, help="samples per task and list length")
    p.add_argument("--gen-length", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="plot path (default: <script name>.png next to the script)")
    return p.parse_args()


def evaluate(model, name: str, sampler: Sampler, samples, batch_size: int, options: dict[str, Any]) -> dict:
    """Mean score and accounting of one configuration, in the runner's summary shape (the frontier plot
    draws one curve per sampler + non-swept options, e.g. per cache or block length)."""
    scores, nfe, gen, tps, wall = [], 0, 0, [], 0.0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        r = sampler.generate(model, [s.prompt for s in chunk])
        scores += [score(s, t) for s, t in zip(chunk, r.text)]
        nfe, gen = nfe + sum(r.row_nfe), gen + sum(r.gen_tokens)
        tps += [r.canvas.shape[1] / max(n, 1) for n in r.row_nfe]
        wall += r.wall_time
    label = f"{name} " + " ".join(f"{k}={v}" for k, v in options.items())
    return {"label": label, "sampler": name, "options": options, "config": sampler.config, "n": len(samples),
            "score": sum(scores) / len(scores), "nfe": nfe / len(samples), "tokens_per_forward": gen / max(nfe, 1),
            "tokens_per_step": sum(tps) / len(tps), "wall_time": wall, "tokens_per_second": gen / wall}


def run(description: str, grid: list[tuple[str, dict[str, Any]]], script: str) -> None:
    """`grid`: (sampler name, options) pairs; configurations `Sampler` rejects are skipped with its message."""
    args = parse_args(description)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    samples = make_suite(args.suite, seed=1234, per_length=args.per_length)
    entries = []
    for name, options in grid:
        try:
            sampler = Sampler(name, gen_length=args.gen_length, **options)
        except ValueError as err:
            print(f"skipping {name} {options}: {err}")
            continue
        entries.append(evaluate(model, name, sampler, samples, args.batch_size, options))
        print(f"{entries[-1]['label']}: score {entries[-1]['score']:.3f}, "
              f"tokens/forward {entries[-1]['tokens_per_forward']:.2f}", flush=True)
    if not entries:
        raise SystemExit("no configuration of this sweep is available in this build")
    print(markdown_table(entries))
    out = Path(args.out) if args.out else Path(script).with_suffix(".png")
    print(f"frontier plot: {frontier_plot(entries, out, title=description)}")

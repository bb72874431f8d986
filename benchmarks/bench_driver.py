"""CPU time per `generate` of each step-wise loop on the tiny zoo models, with a fingerprint of the tokens.

    python benchmarks/bench_driver.py --reps 3

One thread; the CPU time (process time) of `generate` on 4 ragged prompts, gen_length 64, after one warm-up,
averaged over `--reps`. The fingerprint (sha1 of the canvas) lets two versions of the loop code be compared
token for token: run the script under each and diff the output.
"""
from __future__ import annotations

import argparse
import hashlib
import time

import torch

from dllm_decode import Sampler, load_model


def cases(drafter) -> list[tuple[str, str, dict]]:
    return [("tiny-llada", "threshold", {}), ("tiny-llada", "ssd", {}), ("tiny-llada", "ssd", {"cache": "dual"}),
            ("tiny-llada", "confidence", {"cache": "windowed", "refresh": 4, "active_masks": 4, "attended_masks": 8}),
            ("tiny-sdar", "threshold", {}), ("tiny-sdar", "s2d2", {}), ("tiny-sdar", "s2d2", {"route": "ucb"}),
            ("tiny-sdar", "s2d2", {"route": "hysteresis"}), ("tiny-ar", "deer", {"drafter": drafter})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=None, help="presets to run (default: every case)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 40, (n,), generator=g) for n in (5, 11, 8, 7)]
    models = {n: load_model(n) for n in ("tiny-llada", "tiny-sdar", "tiny-ar", "tiny-deer-drafter")}
    total = 0.0
    for name, preset, options in cases(models["tiny-deer-drafter"]):
        if args.only and preset not in args.only:
            continue
        sampler = Sampler(preset, gen_length=args.gen, **options)
        sampler.generate(models[name], prompts)  # warm-up
        start = time.process_time()
        for _ in range(args.reps):
            out = sampler.generate(models[name], prompts)
        seconds = (time.process_time() - start) / args.reps
        total += seconds
        shown = {k: v for k, v in options.items() if k != "drafter"}
        digest = hashlib.sha1(out.canvas.cpu().numpy().tobytes()).hexdigest()[:10]
        print(f"{name:11s} {preset:10s} {str(shown):75s} cpu {seconds * 1e3:8.1f} ms  nfe {out.nfe:3d}  "
              f"tokens {digest}")
    print(f"total cpu {total * 1e3:.1f} ms per pass over the cases")


if __name__ == "__main__":
    main()

"""`dllm-decode serve` under load: throughput and latency at concurrency 1, 4, 16 against one-by-one decoding.

For each model, the same N requests are decoded (a) one by one with `Sampler.generate` in this process, no
HTTP (the sequential baseline), then (b) through the server over loopback HTTP with the `openai` client at
each concurrency level; (c) all N as one `generate` batch, the ceiling of batching here. Throughput = completion tokens / wall time of the whole run; latency = per request,
submit to full reply. "same" counts replies whose text equals the one-by-one output (it must be all).

Models: the zoo's tiny-llada (threshold sampler, its 32-token canvas) and the random mid-size LLaDA of
bench_cache.py (d_model 512, 8 layers, vocab 32000) with the dual cache, one token per step
(`confidence`), ragged token-id prompts.

    python benchmarks/bench_serve.py                       # both models, N=16, concurrency 1 4 16
    python benchmarks/bench_serve.py --models mid --requests 32 --gen-length 64
    python benchmarks/bench_serve.py --models zoo --requests 64 --sampler llada21   # a revising rule
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai  # noqa: E402

from bench_cache import build_model  # noqa: E402
from dllm_decode import Sampler, load_model  # noqa: E402
from dllm_decode.evals.tasks import make_samples  # noqa: E402
from dllm_decode.serve.app import Server  # noqa: E402
from dllm_decode.serve.background import running  # noqa: E402


def workload(name: str, n: int, gen_length: int, zoo_sampler: str = "threshold"):
    """(model, served name, sampler name, options, prompts) for one benchmark model."""
    if name == "zoo":
        model = load_model("tiny-llada")
        return model, "tiny-llada", zoo_sampler, {}, [s.prompt for s in make_samples("copy", per_length=n, lengths=(4,))][:n]
    model = build_model()
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 31000, (int(k),), generator=g).tolist() for k in torch.randint(32, 96, (n,), generator=g)]
    return model, "mid-llada", "confidence", {"gen_length": gen_length, "block_length": 32, "cache": "dual"}, prompts


def summary(label: str, tokens: int, wall: float, latencies: list[float], same: int, n: int) -> str:
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return (f"| {label} | {tokens / wall:.1f} | {statistics.median(latencies):.3f} | {q[98]:.3f} | {wall:.2f} | "
            f"{same}/{n} |")


def sequential(model, sampler: Sampler, prompts) -> tuple[list[str], str]:
    texts, latencies, tokens = [], [], 0
    start = time.perf_counter()
    for prompt in prompts:
        t0 = time.perf_counter()
        result = sampler.generate(model, prompt if isinstance(prompt, str) else torch.tensor(prompt))
        latencies.append(time.perf_counter() - t0)
        ids = result.ids[0]
        tokens += len(ids)
        texts.append(model.tokenizer.decode(ids, skip_special_tokens=True) if model.tokenizer else " ".join(map(str, ids)))
    return texts, summary("sequential `generate`", tokens, time.perf_counter() - start, latencies, len(prompts),
                          len(prompts))


def one_batch(model, sampler: Sampler, prompts) -> str:
    """All prompts as one `generate` batch: the most any batcher can get from this model on this machine."""
    start = time.perf_counter()
    result = sampler.generate(model, [p if isinstance(p, str) else torch.tensor(p) for p in prompts])
    wall = time.perf_counter() - start
    return summary("one batch `generate` (ceiling)", sum(result.gen_tokens), wall, [wall] * len(prompts),
                   len(prompts), len(prompts))


def served(url: str, model_name: str, prompts, references: list[str], concurrency: int) -> str:
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)

    def one(i: int) -> tuple[float, int, bool]:
        t0 = time.perf_counter()
        reply = client.completions.create(model=model_name, prompt=prompts[i])
        return time.perf_counter() - t0, reply.usage.completion_tokens, reply.choices[0].text == references[i]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        rows = list(pool.map(one, range(len(prompts))))
    wall = time.perf_counter() - start
    return summary(f"server, concurrency {concurrency}", sum(r[1] for r in rows), wall, [r[0] for r in rows],
                   sum(r[2] for r in rows), len(prompts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["zoo", "mid"], choices=["zoo", "mid"])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--gen-length", type=int, default=32, help="mid model's canvas (a multiple of 32)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sampler", default="threshold", help="the zoo model's sampler, e.g. wino or llada21")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.models:
        model, model_name, sampler_name, options, prompts = workload(name, args.requests, args.gen_length, args.sampler)
        sampler = Sampler(sampler_name, **options)
        warm = prompts[0] if isinstance(prompts[0], str) else torch.tensor(prompts[0])
        sampler.generate(model, warm)  # warm-up, excluded
        print(f"\n{model_name}: Sampler({sampler_name!r}, {options}), {len(prompts)} requests, "
              f"torch threads {args.threads}")
        print("| run | tokens/s | p50 latency (s) | p99 latency (s) | wall (s) | same as one-by-one |")
        print("|---|---|---|---|---|---|")
        references, line = sequential(model, sampler, prompts)
        print(line, flush=True)
        print(one_batch(model, sampler, prompts), flush=True)
        server = Server(model, model_name, sampler_name, options, max_queue=4 * args.requests, max_rows=64)
        with running(server) as base:
            url = f"{base}/v1"
            for concurrency in args.concurrency:
                print(served(url, model_name, prompts, references, concurrency), flush=True)
            forwards = server.metrics.forwards
        print(f"forwards run by the server over all levels: {forwards}")


if __name__ == "__main__":
    main()

"""Generate wall time at 1 and 2 torch threads, quiet and beside a busy neighbour process, side by side.

    python benchmarks/bench_threads.py [--model tiny-llada] [--repeats 7] [--neighbours 1]

The neighbour is a process this script starts: a pure-Python busy loop pinned to nothing, which takes a
whole core (the situation of a shared machine, or of a second job on a laptop). torch's intra-op pool
splits every op across its threads and waits for the slowest; when one thread's core is taken, each op
waits for the scheduler, so a 2-thread decode can fall far behind a 1-thread one. Prints a Markdown
table of the median and spread of `repeats` timed generates (after one warm-up) for each setting.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from dllm_decode import Sampler, load_model

PROMPTS = ["reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]"]


def start_neighbours(count: int) -> list[subprocess.Popen]:
    """`count` busy-loop processes, each taking one core until stopped."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(0.5)  # let them get scheduled
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def timed(sampler: Sampler, model, threads: int, repeats: int) -> list[float]:
    torch.set_num_threads(threads)
    sampler.generate(model, PROMPTS)  # warm-up: allocator and oneDNN primitives
    times = []
    for _ in range(repeats):
        times.append(sampler.generate(model, PROMPTS).wall_time)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-llada")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--neighbours", type=int, default=1, help="busy processes started for the loaded rows")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    model = load_model(args.model)
    sampler = Sampler("confidence", gen_length=32, block_length=8, steps=32)  # 32 steps, one token each
    rows = []
    for loaded in (False, True):
        procs = start_neighbours(args.neighbours) if loaded else []
        try:
            for threads in args.threads:
                rows.append((loaded, threads, timed(sampler, model, threads, args.repeats)))
        finally:
            stop(procs)
    print(f"model {args.model}, {sampler.decode.gen_length} steps, batch {len(PROMPTS)}, {os.cpu_count()} CPUs "
          f"visible, torch {torch.__version__}, median of {args.repeats} (after one warm-up)\n")
    print("| neighbour | threads | median s | min s | max s |\n|---|---:|---:|---:|---:|")
    for loaded, threads, times in rows:
        label = f"{args.neighbours} busy process(es)" if loaded else "none"
        print(f"| {label} | {threads} | {statistics.median(times):.3f} | {min(times):.3f} | {max(times):.3f} |")


if __name__ == "__main__":
    main()

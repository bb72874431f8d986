"""The published ParallelBench test files (a copy the user has): loader, chat turns, infill canvas, scores.

    from dllm_decode.evals.parallelbench import load_parallelbench, render
    suite = load_parallelbench("ParallelBench/dataset/parallel_bench/data/output/test")
    print(render(model, suite.samples[0]))   # exactly the text the model receives

Exports load lazily so the report can import the reference numbers without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchSample": "data", "BenchSuite": "data", "load_parallelbench": "data", "plain_join": "data",
    "PREFIX": "data", "render": "inputs", "prompt_ids": "inputs", "batch_inputs": "inputs",
    "decode_canvas": "inputs", "grade": "scoring", "parse_items": "scoring", "METRICS": "scoring",
    "PAPER_AVERAGES": "reference", "summary_block": "reference", "reference_plot": "reference",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

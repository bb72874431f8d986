"""Evaluation: procedural tasks, the resumable grid runner, metrics, reports and the lm-eval adapter.

    from dllm_decode.evals import EvalSettings, parse_grid, run_eval, write_report
    run_eval(model, parse_grid(["confidence:k=1,2,4", "threshold:threshold=0.7,0.9"]), EvalSettings(), "runs/x")

Exports load lazily so `dllm_decode.evals.tasks` (used by the tokenizer and trainer) stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EvalSettings": "runner", "run_eval": "runner",
    "SamplerSpec": "grid", "parse_grid": "grid", "parse_spec": "grid", "PRESETS": "grid", "get_preset": "grid",
    "summarize": "metrics", "pbx": "metrics",
    "load_parallelbench": "parallelbench",
    "write_report": "report", "frontier_plot": "report", "markdown_table": "report", "load_summary": "report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

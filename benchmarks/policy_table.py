"""Every policy of issue 5 at its defaults, plus the one-token-per-step baseline, on the tiny zoo models.

Runs the eval runner (`dllm_decode.evals.runner.run_eval`, resumable) on the index-based Waiting Line
suite and writes `docs/results/policies.md`: per model, score / NFE / tokens per forward overall and per
task, and each configuration's score as a share of the baseline's.

    python benchmarks/policy_table.py                       # both tiny models, 10 samples per task/length
    python benchmarks/policy_table.py --models tiny-llada --per-length 4 --no-write
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dllm_decode import load_model
from dllm_decode.evals.grid import parse_grid
from dllm_decode.evals.runner import EvalSettings, run_eval

REPO = Path(__file__).resolve().parent.parent
BASELINE = "confidence"
COMMA = 4  # the zoo tokenizer's "," (its word-level vocabulary has no newline); AdaBlock's delimiter here
SPECS = (
    BASELINE,  # LLaDA low-confidence top-k, steps = gen_length: one token per forward
    "threshold",  # Fast-dLLM, tau 0.9 (reference point for the threshold-based policies)
    "creditdecoding",
    "localleap",
    "localleap:eos_fill=block",  # the paper's optional end-of-block EOS stop
    "prophet",
    "sched",
    f"adablock:delimiter_ids={COMMA}",
    # compositions: the end-of-text fill and SchED's all-in commit on top of the threshold-style rules
    "threshold:eos_fill=true",
    "creditdecoding:eos_fill=true",
    "creditdecoding:eos_fill=true:early_commit=sched",
    f"creditdecoding:eos_fill=true:blocks=adaptive:delimiter_ids={COMMA}",
    "localleap:eos_fill=true",
    "eb",  # EB-sampler (issue 23), entropy_bound 0.1 (transformers' default)
    "eb:entropy_bound=0.01,0.5,1,2",  # its knob (0.1 is the row above)
)
# ---- revocable rules (issue 23 item 2; `wino`, LLaDA2.1 token editing): THE LEAD ADDS THEIR SPECS HERE ----
# In the `dllm-decode eval --samplers` syntax, e.g. "wino" or "wino:<knob>=v1,v2"; rerunning the command resumes
# the runs, decodes only the new configurations and adds their rows to both models' tables.
REVOCABLE: tuple[str, ...] = ("wino", "wino:threshold=0.8", "llada21", "llada21:edit_threshold=0.9")


def fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_section(name: str, configs: list[dict[str, Any]]) -> list[str]:
    base = next(c for c in configs if c["label"] == BASELINE)
    lines = [f"### {name}", "", "| configuration | score | % of baseline | NFE | tokens/forward |",
             "|---|---:|---:|---:|---:|"]
    for c in configs:
        share = 100 * c["score"] / base["score"] if base["score"] else None
        lines.append(f"| {c['label']} | {fmt(c['score'], 3)} | {fmt(share, 1)} | {fmt(c['nfe'], 1)} | "
                     f"{fmt(c['tokens_per_forward'])} |")
    tasks = list(base["per_task_metrics"])
    lines += ["", "Per task (score / NFE / tokens per forward):", "",
              "| configuration | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for c in configs:
        cells = [c["per_task_metrics"][t] for t in tasks]
        lines.append(f"| {c['label']} | " + " | ".join(
            f"{fmt(m['score'])} / {fmt(m['nfe'], 1)} / {fmt(m['tokens_per_forward'])}" for m in cells) + " |")
    return lines + [""]


def serving_specs(specs: list, model, gen_length: int) -> tuple[list, list[str]]:
    """The specs `model` can decode, and one line per spec it refuses (with the library's message), e.g. WINO
    on Dream, whose shifted logits cannot serve WINO's shadow rows."""
    served, refused = [], []
    for spec in specs:
        try:
            spec.build(gen_length).fit(model, 1)
        except ValueError as err:
            refused.append(f"- `{spec.label}` is refused on this model: {err}")
            continue
        served.append(spec)
    return served, [*refused, ""] if refused else []


def revocable_note() -> list[str]:
    if REVOCABLE:
        return []
    return ["Revocable rules (WINO, LLaDA2.1 token editing): not measured yet; they join these tables once their "
            "specs are in `REVOCABLE` in `benchmarks/policy_table.py`.", ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-llada", "tiny-dream"])
    parser.add_argument("--per-length", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=str(REPO / "runs"), help="where the resumable run directories go")
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "policies.md"))
    parser.add_argument("--no-write", action="store_true", help="print the tables instead of writing --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = EvalSettings(suite="index", seed=1234, per_length=args.per_length, fmt="compact", gen_length=32)
    specs = parse_grid([*SPECS, *REVOCABLE])
    started, load = time.perf_counter(), [os.getloadavg()]
    sections = []
    for name in args.models:
        model = load_model(name)
        served, refused = serving_specs(specs, model, settings.gen_length)
        configs = run_eval(model, served, settings, Path(args.runs) / f"policies-{name}", model_id=name,
                           progress=False)
        sections += model_section(name, configs) + refused
    load.append(os.getloadavg())
    sections += [f"Measured: the command took {time.perf_counter() - started:.0f} s of wall time for "
                 f"{len(args.models)} model(s) x {len(specs)} configurations ({args.threads} torch thread; a resumed "
                 "run counts only its last invocation) on 2 cores shared with other jobs; load average (1, 5, 15 min, "
                 f"as `uptime` prints it) {', '.join(f'{x:.2f}' for x in load[0])} at the start and "
                 f"{', '.join(f'{x:.2f}' for x in load[1])} at the end.",
                 "", *revocable_note()]
    text = "\n".join(sections)
    if args.no_write:
        print(text)
        return 0
    out = Path(args.out)
    head = out.read_text().split("<!-- tables -->")[0] if out.exists() else "# Policies on the tiny models\n\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + "<!-- tables -->\n\n" + text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

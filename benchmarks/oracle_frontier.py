"""Every commit rule on the exact denoiser (`load_model("oracle")`): what each policy loses by itself.

Two resumable eval runs (`dllm_decode.evals.runner.run_eval`, the engine of `dllm-decode eval`):
1. every registered sampler at its defaults over the full `all` suite (25 samples per task and length),
   timed: the "full suite x every policy" cost;
2. each rule's main knob swept (`PRESETS["oracle-frontier"]` in `dllm_decode/evals/grid.py`) on a smaller
   draw of the same suite.
Prints the measured numbers and writes `docs/results/oracle.md`.

    python benchmarks/oracle_frontier.py                   # resumable; tens of minutes on 2 contended cores
    python benchmarks/oracle_frontier.py --per-length 2 --sweep-per-length 1 --no-write   # a smoke run
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import torch

from dllm_decode import load_model
from dllm_decode.evals.grid import PRESETS, parse_grid
from dllm_decode.evals.metrics import pbx_table
from dllm_decode.evals.records import RECORDS_FILE, read_run
from dllm_decode.evals.runner import EvalSettings, run_eval

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = ("confidence", "random", "origin", "maskgit_plus", "topk_margin", "entropy", "threshold", "factor",
            "entropy_threshold", "creditdecoding", "localleap", "prophet", "sched", "adablock:delimiter_ids=4",
            "ssd")  # every registered name but aliases and deer / s2d2 (they need an AR / block-diffusion model)
DETERMINISTIC = ("copy", "reverse", "sort", "insert_index", "remove_index", "replace_index", "sudoku")
RANDOM = ("shuffle", "insert_random", "remove_random", "replace_random", "latin")
QUALITY = 0.99  # share of stepwise quality every task must keep at the "best operating point"


def fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def group_mean(entry: dict[str, Any], tasks: tuple[str, ...], key: str) -> float:
    metrics = [entry["per_task_metrics"][t] for t in tasks if t in entry["per_task_metrics"]]
    return sum(m[key] for m in metrics) / len(metrics)


def area(points: list[tuple[float, float]], t_max: float) -> float:
    """Mean score over TPF in [0, t_max]: the curve is flat left of its slowest point, 0 right of its fastest."""
    points = sorted(points)
    total = points[0][0] * points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        total += (x1 - x0) * (y0 + y1) / 2
    return total / t_max


def curve_name(entry: dict[str, Any]) -> str:
    """A rule's sweep: the sampler, its fixed options, and (in brackets) the knob that varies."""
    options = entry["options"]
    fixed = [f"{k}={v}" for k, v in options.items() if k not in SWEPT]
    knob = [k for k in options if k in SWEPT]
    return " ".join([entry["sampler"], *fixed] + [f"({', '.join(knob)})"] * bool(knob))


SWEPT = ("k", "threshold", "factor", "entropy_threshold", "radius", "relaxed_threshold", "late", "tau_high",
         "draft_length")


def adaptivity_table(configs: list[dict[str, Any]]) -> list[str]:
    lines = ["| policy (defaults) | score | score, deterministic | score, random | forwards, deterministic | "
             "forwards, random | TPF, deterministic | TPF, random |", "|---|" + "---:|" * 7]
    for c in configs:
        lines.append(f"| {c['label']} | {fmt(c['score'], 3)} | {fmt(group_mean(c, DETERMINISTIC, 'score'), 3)} | "
                     f"{fmt(group_mean(c, RANDOM, 'score'), 3)} | {fmt(group_mean(c, DETERMINISTIC, 'nfe'), 1)} | "
                     f"{fmt(group_mean(c, RANDOM, 'nfe'), 1)} | "
                     f"{fmt(group_mean(c, DETERMINISTIC, 'tokens_per_forward'))} | "
                     f"{fmt(group_mean(c, RANDOM, 'tokens_per_forward'))} |")
    return lines


def per_task_table(configs: list[dict[str, Any]]) -> list[str]:
    tasks = list(configs[0]["per_task_metrics"])
    lines = ["| configuration | TPF | " + " | ".join(tasks) + " |", "|---|---:|" + "---:|" * len(tasks)]
    for c in configs:
        cells = [c["per_task_metrics"][t] for t in tasks]
        lines.append(f"| {c['label']} | {fmt(c['tokens_per_forward'])} | " + " | ".join(
            f"{fmt(m['score'])} ({fmt(m['tokens_per_forward'], 1)})" for m in cells) + " |")
    return lines


def frontier_table(configs: list[dict[str, Any]]) -> tuple[list[str], float]:
    t_max = max(c["tokens_per_forward"] for c in configs)
    curves: dict[str, list[dict[str, Any]]] = {}
    for c in configs:
        curves.setdefault(curve_name(c), []).append(c)
    lines = ["| rule (swept knob) | points | TPF range | score range | area (mean score over TPF in [0, "
             f"{t_max:.2f}]) |", "|---|---:|---|---|---:|"]
    for name, group in curves.items():
        tpf = [c["tokens_per_forward"] for c in group]
        score = [c["score"] for c in group]
        auc = area([(c["tokens_per_forward"], c["score"]) for c in group], t_max)
        lines.append(f"| {name} | {len(group)} | {fmt(min(tpf))}-{fmt(max(tpf))} | {fmt(min(score), 3)}-"
                     f"{fmt(max(score), 3)} | {fmt(auc, 3)} |")
    return lines, t_max


def best_point(configs: list[dict[str, Any]], reference: dict[str, Any]) -> list[str]:
    """Configurations keeping >= QUALITY of the stepwise score on every task, fastest first."""
    base = reference["per_task"]
    keep = [c for c in configs if all(c["per_task"][t] >= QUALITY * base[t] for t in base)]
    keep.sort(key=lambda c: -c["tokens_per_forward"])
    lines = ["| configuration | TPF | NFE | score |", "|---|---:|---:|---:|"]
    lines += [f"| {c['label']} | {fmt(c['tokens_per_forward'])} | {fmt(c['nfe'], 1)} | {fmt(c['score'], 3)} |"
              for c in keep[:8]]
    return lines


def adaptivity(configs: list[dict[str, Any]]) -> list[str]:
    """ParallelBench's question (ii), classified from the forwards each rule spends per task group."""
    groups: dict[str, list[str]] = {"adapt": [], "fixed": [], "all-in": []}
    for c in configs:
        det, rnd = group_mean(c, DETERMINISTIC, "nfe"), group_mean(c, RANDOM, "nfe")
        kind = "adapt" if det <= 1.5 and rnd >= 2 * det else "all-in" if rnd <= 1.5 else "fixed"
        groups[kind].append(f"{c['label']} ({det:.1f} / {rnd:.1f} forwards, random-task score "
                            f"{group_mean(c, RANDOM, 'score'):.3f})")
    return [f"- **Adapt** (at most 1.5 forwards per deterministic sample, at least twice that on random ones): "
            f"{'; '.join(groups['adapt'])}.",
            f"- **Do not adapt** (the same budget on every task): {'; '.join(groups['fixed'])}.",
            f"- **Commit everything at once on every task**: {'; '.join(groups['all-in']) or 'none'}."]


def mean_accepted(run_dir: Path, sampler: str) -> float | None:
    _, records = read_run(run_dir / RECORDS_FILE)
    values = [r["batch_loop_stats"]["mean_accepted"] for r in records
              if r["sampler"] == sampler and "mean_accepted" in r.get("batch_loop_stats", {})]
    return sum(values) / len(values) if values else None


def findings(defaults: list[dict[str, Any]], sweep: list[dict[str, Any]], accepted: float | None) -> list[str]:
    """What the tables say, with their numbers; the mechanisms were checked on single prompts (see the report)."""
    by_label = {c["label"]: c for c in defaults + sweep}

    def rnd(label: str) -> str:
        return fmt(group_mean(by_label[label], RANDOM, "score"), 3) if label in by_label else "-"

    best = best_point(sweep, next(c for c in sweep if c["label"] == "confidence k=1"))
    cells = [cell.strip() for cell in best[2].split("|")[1:-1]] if len(best) > 2 else ["none", "-", "-", "-"]
    per_task = min(m["n"] for m in by_label["confidence k=1"]["per_task_metrics"].values())
    return [
        f"- One token per step is exact: `confidence` and `random` at k=1 score 1.000 on every task. Two per step "
        f"already breaks the random tasks (`confidence k=2`: random-task score {rnd('confidence k=2')}; shuffle "
        "and latin 0): the two positions committed together each take their own marginal argmax, and the pair need "
        "not belong to one answer.",
        f"- Prophet and SchED commit everything in the first forward (random-task score {rnd('prophet')}): a "
        "position the oracle is certain of has an unbounded top-2 logit gap (the runner-up has probability "
        "exactly 0; here the most negative float), so the gap averaged over the canvas clears any threshold at "
        "once. A mean of gaps is ruled by its largest term; a trained model's finite logits hide this.",
        "- Dream's rules are not one token per step even at steps = gen_length: the linear time grid ending at "
        "eps = 1e-3 commits 0 tokens in the first step and 2 in the last, so `maskgit_plus k=1` loses "
        f"remove_random (random-task score {rnd('maskgit_plus k=1')}) and `origin` reveals a random number per step.",
        f"- `ssd` gains nothing here (mean accepted chain depth {fmt(accepted)}): it orders its drafts with "
        "`torch.topk`, whose order among exact ties differs from the reference rule's stable order, and every "
        "position the oracle is certain of ties at probability 1. Ordering the drafts by a stable sort would fix "
        "it (left to the owner of `speculative/ssd.py`).",
        "- AdaBlock keeps 1.000 but ends a block at every comma, so even deterministic answers take one "
        "forward per item.",
        f"- **Best operating point: `{cells[0]}`**, {cells[1]} tokens per forward ({cells[2]} forwards per sample) "
        f"with every task at >= 99% of stepwise quality (with {per_task} samples per task in the sweep, that means "
        "every sample solved).",
    ]


def run(model, specs: list[str], settings: EvalSettings, out: Path) -> tuple[list[dict[str, Any]], float]:
    """The run's configurations and its decoding time: the sum of every batch's `generate` wall time, read
    from the records, so a resumed run reports the time of all its batches, not of the last invocation."""
    configs = run_eval(model, parse_grid(specs), settings, out, model_id="oracle", progress=False)
    return configs, sum(c["wall_time"] for c in configs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-length", type=int, default=25, help="defaults run: samples per task and length")
    parser.add_argument("--sweep-per-length", type=int, default=3, help="sweep run: samples per task and length")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", default=str(REPO / "runs"), help="where the resumable run directories go")
    parser.add_argument("--out", default=str(REPO / "docs" / "results" / "oracle.md"))
    parser.add_argument("--no-write", action="store_true", help="print the tables instead of writing --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # `random` / `origin` draw positions from the global generator (their presets set no seed)
    model = load_model("oracle")
    runs = Path(args.runs)
    load = [os.getloadavg()[0]]
    defaults, t_defaults = run(model, list(DEFAULTS), EvalSettings(suite="all", per_length=args.per_length),
                               runs / f"oracle-defaults-{args.per_length}")
    sweep, t_sweep = run(model, list(PRESETS["oracle-frontier"].samplers),
                         EvalSettings(suite="all", per_length=args.sweep_per_length),
                         runs / f"oracle-frontier-{args.sweep_per_length}")
    load.append(os.getloadavg()[0])
    args.load = load
    accepted = mean_accepted(runs / f"oracle-defaults-{args.per_length}", "ssd")
    page = render(defaults, sweep, t_defaults, t_sweep, args, accepted)
    print("\n".join(page))
    if not args.no_write:
        Path(args.out).write_text("\n".join(page) + "\n")
        print(f"\nwrote {args.out}")
    return 0


def render(defaults: list[dict[str, Any]], sweep: list[dict[str, Any]], t_defaults: float, t_sweep: float,
           args: argparse.Namespace, accepted: float | None) -> list[str]:
    reference = next(c for c in sweep if c["label"] == "confidence k=1")
    frontier, t_max = frontier_table(sweep)
    pbx = pbx_table(sweep)["overall"]
    n_def = sum(c["n"] for c in defaults)
    return [
        "# Every policy on the exact denoiser",
        "",
        "Made with `python benchmarks/oracle_frontier.py"
        f" --per-length {args.per_length} --sweep-per-length {args.sweep_per_length} --threads {args.threads}`.",
        "",
        *INTRO,
        "",
        f"## Full suite x every policy's defaults ({n_def} decodes, {len(defaults)} policies)",
        "",
        f"Measured decoding time: **{t_defaults:.0f} s** (the sum of every batch's `generate` wall time, batches "
        f"of 32, {args.threads} torch thread, on 2 cores shared with other jobs: 1-minute load average "
        f"{args.load[0]:.1f} at the start and {args.load[1]:.1f} at the end of this invocation; runner bookkeeping "
        "and start-up add a few seconds; a resumed run sums the batches of every invocation).",
        "",
        *adaptivity_table(defaults),
        "",
        "### Which rules adapt their parallelism to the task (ParallelBench's question ii)",
        "",
        *adaptivity(defaults),
        "",
        "## Sweeps: score per task (tokens per forward) against tokens per forward",
        "",
        f"{sum(c['n'] for c in sweep)} decodes, {len(sweep)} configurations, {t_sweep:.0f} s of decoding. Cells: "
        "score (tokens per forward) per task.",
        "",
        *per_task_table(sweep),
        "",
        "## Area under score vs tokens per forward, per rule",
        "",
        *frontier,
        "",
        "PBx over the sweep (ParallelBench: highest tokens per step, canvas / forwards, at average score >= x; "
        "adaptive sweeps interpolated): " + ", ".join(f"{k} = {fmt(v)}" for k, v in pbx.items()) + ".",
        "",
        f"## Best operating point (every task >= {QUALITY:.0%} of stepwise quality)",
        "",
        *best_point(sweep, reference),
        "",
        "## Findings",
        "",
        *findings(defaults, sweep, accepted),
        "",
    ]


INTRO = [
    "The oracle (`load_model(\"oracle\")`, `dllm_decode/models/oracle.py`) returns the exact conditional "
    "P(x_i = v | committed tokens) of the uniform distribution over the answers the scorer accepts, so every "
    "point lost here is lost by the decoding policy, not by a model. Suite `all` (ten Waiting Line tasks plus "
    "4x4 latin and sudoku), compact format, seed 1234, lengths 3-6, gen_length 32, greedy (temperature 0), "
    "no cache.",
    "",
    "Definitions:",
    "- score: share of samples the suite's scorer accepts (per task; overall = mean over tasks).",
    "- TPF (tokens per forward): generated tokens before the first EOS / forwards the row took part in, "
    "summed over samples then divided (DESIGN.md accounting). EOS padding does not count, so one forward "
    "for a 13-token answer is TPF 13.",
    "- PBx (ParallelBench): the highest tokens per step (canvas length / forwards) among configurations "
    "with average score >= x%, linearly interpolated along an adaptive (no step budget) sweep.",
    "- area: a rule's sweep as a curve of score against TPF, trapezoids between measured points, held flat "
    "left of its slowest point and 0 right of its fastest, divided by the largest TPF of the whole sweep: "
    "the mean score over TPF in [0, max TPF]; 1.0 would be perfect at every speed.",
    "- deterministic tasks: copy, reverse, sort, insert/remove/replace at an index, sudoku (one answer); "
    "random tasks: shuffle, insert/remove/replace at a random position, latin (several answers).",
]


if __name__ == "__main__":
    raise SystemExit(main())

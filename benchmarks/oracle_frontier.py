"""Every commit rule on the exact denoiser (`load_model("oracle")`): what each policy loses by itself.

Two resumable eval runs (`dllm_decode.evals.runner.run_eval`, the engine of `dllm-decode eval`):
1. every registered sampler at its defaults over the full `all` suite (25 samples per task and length),
   timed: the "full suite x every policy" cost;
2. each rule's main knob swept (`PRESETS["oracle-frontier"]` in `dllm_decode/evals/grid.py`) on a smaller
   draw of the same suite.
Rules listed in `REVOCABLE` below join both runs and every table. Prints the measured numbers, the whole
command's wall time and the load average around it, and writes `docs/results/oracle.md`.

    python benchmarks/oracle_frontier.py                   # resumable; tens of minutes on 2 contended cores
    python benchmarks/oracle_frontier.py --per-length 2 --sweep-per-length 1 --no-write   # a smoke run
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from dllm_decode import load_model
from dllm_decode.evals.grid import PRESETS, parse_grid
from dllm_decode.evals.metrics import pbx_table
from dllm_decode.evals.records import RECORDS_FILE, read_run
from dllm_decode.evals.report import frontier_plot
from dllm_decode.evals.runner import EvalSettings, run_eval
from frontier_tables import (DETERMINISTIC, QUALITY, RANDOM, adaptivity, adaptivity_table, best_point, fmt,
                             frontier_table, group_mean, keeps_quality, per_task_table)

REPO = Path(__file__).resolve().parent.parent
DEFAULTS = ("confidence", "random", "origin", "maskgit_plus", "topk_margin", "entropy", "threshold", "factor",
            "entropy_threshold", "creditdecoding", "localleap", "prophet", "sched", "adablock:delimiter_ids=4",
            "ssd", "eb")  # every registered name but aliases and deer / s2d2 (they need an AR / block-diffusion model)
# ---- revocable rules (issue 23 item 2; `wino`, LLaDA2.1 token editing): THE LEAD ADDS THEM HERE ----
# One (defaults spec, sweep spec) pair per rule, in the `dllm-decode eval --samplers` syntax, e.g.
# ("wino", "wino:<knob>=v1,v2,v3"). Both runs and every table of the page then include them, and the page's
# "Revocable rules" section lists their rows; nothing else needs to change.
REVOCABLE: tuple[tuple[str, str], ...] = (
    ("wino", "wino:threshold=0.3,0.5,0.7,0.9"),  # WINO: wide-in threshold (threshold_back 0.9)
    ("llada21", "llada21:threshold=0.5,0.7,0.9"),  # LLaDA2.1 editing: mask-to-token threshold (edit 0.5)
)
# the curves of the page's plot (sampler names; every swept configuration of each), revocable rules included
# (in drawing order, which sets colours and label offsets; factor is left out: its points sit on threshold's)
PLOTTED = ("eb", "threshold", "confidence")


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

    reference = by_label["confidence k=1"]
    best = best_point(sweep, reference)
    cells = [cell.strip() for cell in best[2].split("|")[1:-1]] if len(best) > 2 else ["none", "-", "-", "-"]
    per_task = min(m["n"] for m in reference["per_task_metrics"].values())
    return [
        f"- One token per step is exact: `confidence` and `random` at k=1 score 1.000 on every task. Two per step "
        f"already breaks the random tasks (`confidence k=2`: random-task score {rnd('confidence k=2')}; shuffle "
        "and latin 0): the two positions committed together each take their own marginal argmax, and the pair need "
        "not belong to one answer.",
        f"- Prophet and SchED commit everything in the first forward (random-task score {rnd('prophet')}), and "
        "that is their published rule on a perfect model, not a defect of the code: the rule averages the raw "
        "top-2 logit gap z1 - z2 over its region (here the whole canvas: the tasks have no \"The answer is\" "
        "anchor) and fires when the mean clears the threshold. A position the oracle is certain of (a comma, a "
        "bracket, the EOS tail) has z2 = log 0, an unbounded gap (here the most negative float, so ~3.4e38), and "
        "one such position lifts the mean over any threshold at the first step. A mean of gaps is ruled by its "
        "largest term; a trained model's finite logits hide this, and a model that grows surer moves toward it. "
        "Only a region without a certain position (Prophet's `answer_start` on an uncertain span) lets it wait.",
        "- Dream's rules are not one token per step even at steps = gen_length: step i commits int(n (1 - s/t)) "
        "on the grid linspace(1, 1e-3, steps + 1), which is 0 at the first step and 2 at the last. That is Dream's "
        "published `diffusion_generate` count (`tests/test_core.py` checks it against the float32 grid), so "
        f"`maskgit_plus k=1` loses remove_random (random-task score {rnd('maskgit_plus k=1')}) by the schedule's own "
        "two-token step, and `origin` reveals a random number per step.",
        *eb_findings(sweep, reference),
        f"- `ssd` (draft_length 4) accepts {fmt(accepted)} reference steps per verification forward and its canvas "
        "is the stepwise `confidence` trajectory (score 1.000). It ranks its drafts by the rule's own key with a "
        "stable sort, so ties (every position the oracle is certain of has probability 1) take the column order "
        "the stepwise rule takes; with `torch.topk` order among exact ties it accepted 1.08.",
        "- AdaBlock keeps 1.000 but ends a block at every comma, so even deterministic answers take one "
        "forward per item.",
        f"- **Best operating point: `{cells[0]}`**, {cells[1]} tokens per forward ({cells[2]} forwards per sample) "
        f"with every task at >= 99% of stepwise quality (with {per_task} samples per task in the sweep, that means "
        "every sample solved).",
    ]


def eb_findings(sweep: list[dict[str, Any]], reference: dict[str, Any]) -> list[str]:
    """The EB-sampler's sweep: up to which bound it stays exact, and what it costs beyond."""
    eb = sorted((c for c in sweep if c["sampler"] == "eb"), key=lambda c: c["config"]["entropy_bound"])
    if not eb:
        return []
    exact = [c for c in eb if keeps_quality(c, reference)]
    lossy = [c for c in eb if not keeps_quality(c, reference)]
    line = "- The EB-sampler (`eb`) "
    if exact:
        top = exact[-1]  # the largest exact bound
        bounds = ", ".join(f"{c['config']['entropy_bound']:g}" for c in exact)
        line += (f"keeps every task at stepwise quality at entropy_bound {bounds} "
                 f"(at {top['config']['entropy_bound']:g}: {fmt(top['tokens_per_forward'])} tokens per forward, "
                 f"{fmt(group_mean(top, DETERMINISTIC, 'nfe'), 1)} / {fmt(group_mean(top, RANDOM, 'nfe'), 1)} "
                 "forwards per deterministic / random sample): every position the oracle is certain of has "
                 "entropy 0 and adds nothing to sum(H) - max(H), so a step takes all of them plus the "
                 "lowest-entropy uncertain position, and a second uncertain one only if the smaller entropy of the "
                 "two is within the bound; one uncertain position per step given the rest is exact")
    if lossy:
        first = lossy[0]
        line += ("; " if exact else "") + (
            f"from entropy_bound {first['config']['entropy_bound']:g} two uncertain positions fit under the bound "
            f"and the random tasks fall (random-task score {fmt(group_mean(first, RANDOM, 'score'), 3)} at "
            f"{fmt(first['tokens_per_forward'])} tokens per forward)")
    return [line + "."]


def revocable_section(defaults: list[dict[str, Any]], sweep: list[dict[str, Any]]) -> list[str]:
    """The rules of `REVOCABLE`: their rows of both runs, or where to add them."""
    if not REVOCABLE:
        return ["Not measured yet: the revocable axis (WINO, LLaDA2.1 token editing; issue 23 item 2) is being "
                "built. To add a rule, put its (defaults spec, sweep spec) pair in `REVOCABLE` in "
                "`benchmarks/oracle_frontier.py` and rerun the command at the top: both runs resume, decode only the "
                "new configurations, and every table above includes them."]
    names = {spec.split(":")[0] for pair in REVOCABLE for spec in pair}
    rows = [c for c in defaults + sweep if c["sampler"] in names]
    return ["Their rows of both runs (defaults first), score (tokens per forward) per task:", "",
            *per_task_table(rows)]


def run(model, specs: list[str], settings: EvalSettings, out: Path) -> tuple[list[dict[str, Any]], float]:
    """The run's configurations and its decoding time: the sum of every batch's `generate` wall time, read
    from the records, so a resumed run reports the time of all its batches, not of the last invocation."""
    configs = run_eval(model, parse_grid(specs), settings, out, model_id="oracle", progress=False)
    return configs, sum(c["wall_time"] for c in configs)


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
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
    load = [os.getloadavg()]
    defaults, t_defaults = run(model, [*DEFAULTS, *(pair[0] for pair in REVOCABLE)],
                               EvalSettings(suite="all", per_length=args.per_length),
                               runs / f"oracle-defaults-{args.per_length}")
    sweep, t_sweep = run(model, [*PRESETS["oracle-frontier"].samplers, *(pair[1] for pair in REVOCABLE)],
                         EvalSettings(suite="all", per_length=args.sweep_per_length),
                         runs / f"oracle-frontier-{args.sweep_per_length}")
    load.append(os.getloadavg())
    args.load, args.wall = load, time.perf_counter() - started
    accepted = mean_accepted(runs / f"oracle-defaults-{args.per_length}", "ssd")
    page = render(defaults, sweep, t_defaults, t_sweep, args, accepted)
    print("\n".join(page))
    if not args.no_write:
        Path(args.out).write_text("\n".join(page) + "\n")
        draw(sweep, plot_path(args))
        print(f"\nwrote {args.out} and {plot_path(args)}")
    return 0


def draw(sweep: list[dict[str, Any]], path: Path) -> None:
    """The page's plot: the PLOTTED rules' sweeps (and the revocable ones), score vs tokens per forward."""
    order = [*PLOTTED, *(pair[0].split(":")[0] for pair in REVOCABLE)]
    chosen = [c for c in sweep if c["sampler"] in order and "eos_fill" not in c["options"]]
    frontier_plot(sorted(chosen, key=lambda c: order.index(c["sampler"])), path,
                  title="the exact denoiser: score vs tokens per forward (sweep)")


def plot_path(args: argparse.Namespace) -> Path:
    return Path(args.out).with_name("oracle_frontier.png")


def uptime(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


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
        f"That command took **{args.wall:.0f} s** of wall time (start-up, both runs, this page; a resumed run "
        f"counts only its last invocation) on 2 cores shared with other jobs; load average (1, 5, 15 min, as "
        f"`uptime` prints it) {uptime(args.load[0])} at the start and {uptime(args.load[1])} at the end.",
        "",
        *INTRO,
        "",
        f"## Full suite x every policy's defaults ({n_def} decodes, {len(defaults)} policies)",
        "",
        f"Measured decoding time: **{t_defaults:.0f} s** (the sum of every batch's `generate` wall time, batches "
        f"of 32, {args.threads} torch thread; a resumed run sums the batches of every invocation).",
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
        f"![score vs tokens per forward]({plot_path(args).name})",
        "",
        f"The plot: overall score against tokens per forward for {', '.join(PLOTTED)} (each point labelled with "
        "its knob; the revocable rules join it once listed).",
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
        "## Revocable rules (WINO, LLaDA2.1 token editing)",
        "",
        *revocable_section(defaults, sweep),
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

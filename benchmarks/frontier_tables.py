"""The tables of `docs/results/oracle.md` (`oracle_frontier.py`): adaptivity, per-task sweep, area, best point.

Each function takes the runner's summary entries (`run_eval`'s return value) and returns Markdown lines.
"""
from __future__ import annotations

from typing import Any

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
         "draft_length", "entropy_bound")


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


def keeps_quality(config: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Every task at >= QUALITY of the reference's (stepwise) score."""
    return all(config["per_task"][t] >= QUALITY * score for t, score in reference["per_task"].items())


def best_point(configs: list[dict[str, Any]], reference: dict[str, Any]) -> list[str]:
    """Configurations keeping >= QUALITY of the stepwise score on every task, fastest first."""
    keep = [c for c in configs if keeps_quality(c, reference)]
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

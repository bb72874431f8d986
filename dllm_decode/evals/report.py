"""Reports from a run directory: a Markdown table and PNG plots (matplotlib is an optional extra).

`frontier.png`: score vs tokens per forward, one curve per policy (the speed/quality frontier), every
point labelled with its knob (k, threshold, factor ...). `task_frontier.png`: the same per task, one
panel each. `per_task.png`: per-task scores, one bar per configuration. Titles name the model, suite
and sample count; legends sit outside the axes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..pyplot import pyplot
from .metrics import PB_LEVELS, SWEEP_OPTIONS, frontier_points, pbx_table, policy_of, summarize
from .parallelbench import reference as parallelbench
from .records import RECORDS_FILE, read_run

REPORT_FILE = "report.md"


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """Recompute the summary from the records, so a report never disagrees with the data."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.is_file():
        raise ValueError(f"`run_dir` must hold a {RECORDS_FILE} written by `dllm-decode eval`, got {str(run_dir)!r}")
    headers, records = read_run(path)
    if not records:
        raise ValueError(f"{path} has no sample records yet; run `dllm-decode eval` first")
    return {"headers": headers, **summarize(records)}


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(configs: list[dict[str, Any]]) -> str:
    """One row per configuration: score, NFE, tokens per forward / step, tokens/s, wall time, samples."""
    lines = ["| configuration | score | NFE | tokens/forward | tokens/step | tokens/s | wall s | n |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        lines.append(f"| {c['label']} | {_fmt(c['score'], 3)} | {_fmt(c['nfe'], 1)} | "
                     f"{_fmt(c['tokens_per_forward'])} | {_fmt(c['tokens_per_step'])} | "
                     f"{_fmt(c['tokens_per_second'], 0)} | {_fmt(c['wall_time'], 1)} | {c['n']} |")
    return "\n".join(lines)


def pbx_markdown(configs: list[dict[str, Any]]) -> str:
    table = pbx_table(configs)
    cols = [f"PB{lv}" for lv in PB_LEVELS]
    lines = ["| policy | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def per_task_markdown(configs: list[dict[str, Any]]) -> str:
    tasks = list(dict.fromkeys(t for c in configs for t in c["per_task"]))
    lines = ["| configuration | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
    for c in configs:
        lines.append(f"| {c['label']} | " + " | ".join(_fmt(c["per_task"].get(t), 2) for t in tasks) + " |")
    return "\n".join(lines)


def knob_label(entry: dict[str, Any]) -> str:
    """The sweep option(s) that place this configuration on its policy's curve, e.g. "k=4", "threshold=0.9";
    when the user set none, the resolved value of the first sweep option the sampler has."""
    chosen = [f"{k}={v}" for k, v in entry["options"].items() if k in SWEEP_OPTIONS]
    if chosen:
        return " ".join(chosen)
    resolved = [f"{k}={entry['config'][k]}" for k in SWEEP_OPTIONS if entry["config"].get(k) is not None]
    return resolved[0] if resolved else ""


def run_title(header: dict[str, Any], configs: list[dict[str, Any]], what: str) -> str:
    """"<what>: <model> on <suite>, <n> samples per configuration" (n is a range when configs differ)."""
    counts = sorted({c["n"] for c in configs})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{what}: {header.get('model', '?')} on {header.get('suite', '?')}, {n} samples per configuration"


def _finish(fig: Any, ax: Any, path: str | Path, plt: Any) -> Path:
    """Legend outside the axes (it never covers data), saved with the legend inside the picture."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def _labelled_curve(ax: Any, points: list[tuple[float, float, str]], name: str, index: int) -> None:
    """One policy's curve with every point labelled by its knob value. Points of one policy that land on
    the same spot share one label ("threshold=0.7/0.9"); each policy's labels sit at their own height, so
    two policies meeting at a point do not print over each other."""
    line, = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    spots: dict[tuple[float, float], list[str]] = {}
    for x, y, text in points:
        spots.setdefault((round(x, 2), round(y, 3)), []).append(text)
    for (x, y), texts in spots.items():
        key = texts[0].split("=")[0] + "="
        text = texts[0] + "".join("/" + t.removeprefix(key) for t in texts[1:])
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4 - 10 * (index % 3)), fontsize=7,
                    color=line.get_color())


def frontier_plot(configs: list[dict[str, Any]], path: str | Path, *, x: str = "tokens_per_forward",
                  title: str = "speed / quality frontier") -> Path:
    """Score vs `x` (tokens per forward by default), one curve per policy, each point labelled (k=4, ...)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in configs:
        groups[policy_of(c)].append(c)
    for index, (name, group) in enumerate(groups.items()):
        _labelled_curve(ax, [(p[x], p["score"], knob_label(p)) for p in frontier_points(group)], name, index)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("score")
    ax.set_ylim(-0.04, 1.06)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _finish(fig, ax, path, plt)


def task_frontier_plot(configs: list[dict[str, Any]], path: str | Path, *, title: str = "per-task frontier") -> Path:
    """One panel per task: that task's score vs its tokens per forward, one labelled line per policy, so a
    policy that loses one task as tokens per forward rise shows it there (the overall curve averages it away)."""
    plt = pyplot()
    tasks = list(dict.fromkeys(t for c in configs for t in c["per_task"]))
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False, sharey=True)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in configs:
        groups[policy_of(c)].append(c)
    for ax, task in zip(axes.flat, tasks):
        for index, (name, group) in enumerate(groups.items()):
            points = [(p["per_task_metrics"][task]["tokens_per_forward"], p["per_task"][task], knob_label(p))
                      for p in frontier_points(group) if task in p["per_task"]]
            _labelled_curve(ax, points, name, index)
        ax.set_title(task, fontsize=9)
        ax.set_ylim(-0.04, 1.06)
        ax.grid(alpha=0.3)
        ax.set_xlabel("tokens per forward", fontsize=8)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("score")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def per_task_plot(configs: list[dict[str, Any]], path: str | Path, *, title: str = "per-task scores") -> Path:
    """Grouped bars: tasks on the x axis, one bar per configuration; a score of 0 is drawn as a "0" mark."""
    plt = pyplot()
    tasks = list(dict.fromkeys(t for c in configs for t in c["per_task"]))
    width = 0.8 / max(len(configs), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(tasks) + 2), 4.4))
    for i, c in enumerate(configs):
        xs = [t + i * width for t in range(len(tasks))]
        scores = [c["per_task"].get(t) for t in tasks]
        bars = ax.bar(xs, [s or 0.0 for s in scores], width, label=c["label"])
        for x, score in zip(xs, scores):
            if score == 0:  # an empty bar would read as missing data
                ax.text(x, 0.01, "0", ha="center", va="bottom", fontsize=6, color=bars.patches[0].get_facecolor())
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.04)
    ax.set_title(title, fontsize=10)
    return _finish(fig, ax, path, plt)


PBX_NOTE = ("PBx: the highest tokens per step among a policy's configurations scoring at least x% (an adaptive "
            "sweep interpolated between its points). A cell is \"-\" when no configuration of that policy reached "
            "that score, so there is nothing to report; widen the sweep toward slower settings to fill it.")


def write_report(run_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write report.md (and frontier.png, task_frontier.png, per_task.png) into `run_dir`; return the paths."""
    run = Path(run_dir)
    summary = load_summary(run)
    configs = summary["configs"]
    header = summary["headers"][0] if summary["headers"] else {}
    written: dict[str, Path] = {}
    text = [f"# dllm-decode eval: {header.get('model', '?')} on {header.get('suite', '?')}", "",
            f"seed {header.get('seed')}, per_length {header.get('per_length')}, gen_length "
            f"{header.get('gen_length')}, device {header.get('device')}, torch {header.get('torch')}, "
            f"dllm_decode {header.get('dllm_decode')}. {header.get('wall_time_note', '')}", "",
            markdown_table(configs), "", "## PBx (tokens per step at score >= x%)", "", pbx_markdown(configs), "",
            PBX_NOTE, "", "## Per-task scores", "", per_task_markdown(configs), ""]
    bench = parallelbench.report_block(configs, header)
    text += parallelbench.markdown(bench) if bench else []
    (run / REPORT_FILE).write_text("\n".join(text))  # first, so a missing matplotlib still leaves the table
    written["markdown"] = run / REPORT_FILE
    if plots:
        written["frontier"] = frontier_plot(configs, run / "frontier.png",
                                            title=run_title(header, configs, "score vs tokens per forward"))
        title = run_title(header, configs, "per task: score vs tokens per forward")
        written["task_frontier"] = task_frontier_plot(configs, run / "task_frontier.png", title=title)
        written["per_task"] = per_task_plot(configs, run / "per_task.png",
                                            title=run_title(header, configs, "per-task scores"))
        text += ["![frontier](frontier.png)", "", "![per-task frontier](task_frontier.png)", "",
                 "![per task](per_task.png)", ""]
        if bench:
            written["parallelbench"] = parallelbench.reference_plot(bench, run / parallelbench.PLOT_FILE)
            text += [f"![parallelbench]({parallelbench.PLOT_FILE})", ""]
        (run / REPORT_FILE).write_text("\n".join(text))
    return written

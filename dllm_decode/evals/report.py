"""Reports from a run directory: a Markdown table and PNG plots (matplotlib is an optional extra).

`frontier.png`: score vs tokens per forward, one curve per policy (the speed/quality frontier).
`per_task.png`: per-task scores, one bar per configuration.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from .metrics import PB_LEVELS, frontier_points, pbx_table, policy_of, summarize
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


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plots need matplotlib, which is an optional extra: pip install 'dllm-decode[plot]' "
                          "(or pass --no-plots)") from err
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def frontier_plot(configs: list[dict[str, Any]], path: str | Path, *, x: str = "tokens_per_forward",
                  title: str = "speed / quality frontier") -> Path:
    """Score vs `x` (tokens per forward by default), one curve per policy."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in configs:
        groups[policy_of(c)].append(c)
    for name, group in groups.items():
        points = frontier_points(group)
        ax.plot([p[x] for p in points], [p["score"] for p in points], marker="o", label=name)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("score")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def per_task_plot(configs: list[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars: tasks on the x axis, one bar per configuration."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(t for c in configs for t in c["per_task"]))
    width = 0.8 / max(len(configs), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(tasks) + 2), 4.4))
    for i, c in enumerate(configs):
        ax.bar([t + i * width for t in range(len(tasks))], [c["per_task"].get(t, 0.0) for t in tasks], width,
               label=c["label"])
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tasks))], tasks, rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_report(run_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write report.md (and frontier.png, per_task.png) into `run_dir`; return the paths written."""
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
            "## Per-task scores", "", per_task_markdown(configs), ""]
    bench = parallelbench.report_block(configs, header)
    text += parallelbench.markdown(bench) if bench else []
    (run / REPORT_FILE).write_text("\n".join(text))  # first, so a missing matplotlib still leaves the table
    written["markdown"] = run / REPORT_FILE
    if plots:
        written["frontier"] = frontier_plot(configs, run / "frontier.png")
        written["per_task"] = per_task_plot(configs, run / "per_task.png")
        text += ["![frontier](frontier.png)", "", "![per task](per_task.png)", ""]
        if bench:
            written["parallelbench"] = parallelbench.reference_plot(bench, run / parallelbench.PLOT_FILE)
            text += [f"![parallelbench]({parallelbench.PLOT_FILE})", ""]
        (run / REPORT_FILE).write_text("\n".join(text))
    return written

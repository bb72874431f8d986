"""ParallelBench results as the paper reports them: plain and strict scores x100 per task and averaged,
PBx, and the paper's published averages drawn beside the user's results."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import PB_LEVELS, pbx_table, policy_of

# Published average scores (x100) with confidence top-k decoding at k tokens per step.
PAPER_AVERAGES: dict[str, dict[int, float]] = {
    "LLaDA-1.5": {1: 86.4, 2: 74.4, 4: 58.9, 8: 41.1},
    "Dream-7B": {1: 86.6, 2: 80.4, 4: 60.2, 8: 44.6},
}
PLOT_FILE = "parallelbench.png"
NOTE = ("The paper averages 17 tasks, text-writing ones included; this average covers the tasks whose metric the "
        "library implements, so compare per task where the sets differ.")


def config_scores(entry: dict[str, Any]) -> dict[str, Any]:
    """Plain and strict scores x100 of one summary entry, per task and averaged over tasks (the paper's way)."""
    per_task = {task: {"score": 100 * entry["per_task"][task], "score_strict": 100 * entry["per_task_strict"][task],
                       "n": entry["per_task_metrics"][task]["n"]} for task in entry["per_task"]}
    return {"score": 100 * entry["score"], "score_strict": 100 * entry["score_strict"], "per_task": per_task}


def summary_block(configs: list[dict[str, Any]], skipped: dict[str, str]) -> dict[str, Any]:
    """The `parallelbench` entry of summary.json: per configuration label, scores x100; PBx; paper numbers."""
    return {"scores": {c["label"]: {"config_id": c["config_id"], "policy": policy_of(c),
                                    "tokens_per_step": c["tokens_per_step"], **config_scores(c)} for c in configs},
            "pbx": pbx_table(configs)["overall"], "skipped_tasks": skipped,
            "paper_averages": {name: {f"k={k}": v for k, v in row.items()} for name, row in PAPER_AVERAGES.items()},
            "note": NOTE}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(block: dict[str, Any]) -> list[str]:
    """Report lines: scores x100 per configuration and task, PBx, and the paper's averages."""
    scores = block["scores"]
    tasks = list(dict.fromkeys(t for s in scores.values() for t in s["per_task"]))
    lines = ["## ParallelBench (scores x100, plain / strict)", "",
             "| configuration | tokens/step | average | " + " | ".join(tasks) + " |",
             "|---|---:|---:|" + "---:|" * len(tasks)]
    for label, s in scores.items():
        cells = [f"{_fmt(s['per_task'][t]['score'])} / {_fmt(s['per_task'][t]['score_strict'])}"
                 if t in s["per_task"] else "-" for t in tasks]
        lines.append(f"| {label} | {s['tokens_per_step']:.2f} | {_fmt(s['score'])} / {_fmt(s['score_strict'])} | "
                     + " | ".join(cells) + " |")
    lines += ["", "PBx (tokens per step at plain score >= x): "
              + ", ".join(f"PB{lv} {_fmt(block['pbx'].get(f'PB{lv}'))}" for lv in PB_LEVELS), "",
              "Paper averages (confidence top-k, k tokens per step): "
              + "; ".join(f"{name} " + ", ".join(f"k={k} {v}" for k, v in row.items())
                          for name, row in PAPER_AVERAGES.items()), "", NOTE, ""]
    if block["skipped_tasks"]:
        lines += ["Skipped (metric not implemented): " + ", ".join(f"{t} ({m})" for t, m in
                                                                      block["skipped_tasks"].items()), ""]
    return lines


def reference_plot(block: dict[str, Any], path: str | Path) -> Path:
    """Average plain score x100 vs tokens per step: one solid curve per policy of this run, the paper's
    published averages (LLaDA-1.5, Dream-7B at k = 1, 2, 4, 8) as dashed reference lines."""
    from ...pyplot import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, row in PAPER_AVERAGES.items():
        ax.plot(list(row), list(row.values()), linestyle="--", marker="x", label=f"{name} (paper)")
    policies: dict[str, list[dict[str, Any]]] = {}
    for entry in block["scores"].values():
        policies.setdefault(entry["policy"], []).append(entry)
    for policy, entries in policies.items():
        entries = sorted(entries, key=lambda e: e["tokens_per_step"])
        ax.plot([e["tokens_per_step"] for e in entries], [e["score"] for e in entries], marker="o", label=policy)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per step")
    ax.set_ylabel("average score x100")
    ax.set_ylim(-2, 102)
    ax.set_title("ParallelBench: this run vs the paper's averages")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def report_block(configs: list[dict[str, Any]], header: dict[str, Any]) -> dict[str, Any] | None:
    """The ParallelBench block for a run's report, or None when the run used another suite."""
    if not str(header.get("suite", "")).startswith("parallelbench:"):
        return None
    return summary_block(configs, header.get("parallelbench_skipped") or {})

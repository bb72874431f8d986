"""Aggregate per-sample records into per-configuration, per-task metrics and ParallelBench's PBx.

Definitions follow DESIGN.md's accounting section:
- score: mean over tasks of the mean per-sample score (tasks have equal sample counts, so this is also
  the mean over samples);
- nfe: forwards per sample (a row's forwards while it was decoding), averaged;
- tokens_per_forward (TPF): generated tokens before EOS / forwards, summed over samples then divided;
- tokens_per_step (TPS, ParallelBench): canvas length / forwards, averaged over samples;
- tokens_per_second: generated tokens / decoding wall time;
- PBx: the highest TPS among configurations scoring >= x%, where an adaptive policy's sweep (threshold,
  factor: configs with no step budget) is linearly interpolated between adjacent points.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

PB_LEVELS = (90, 80, 70, 60)
# Options that move a policy along its speed/quality curve; any other option defines a separate policy.
SWEEP_OPTIONS = ("k", "steps", "threshold", "factor", "entropy_threshold", "entropy_bound")


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    nfe = [r["nfe"] for r in rows]
    gen = sum(r["gen_tokens"] for r in rows)
    wall = sum(r["wall_time"] for r in rows)
    return {"n": len(rows), "score": sum(r["score"] for r in rows) / len(rows),
            "nfe": sum(nfe) / len(rows), "tokens_per_forward": gen / max(sum(nfe), 1),
            "tokens_per_step": sum(r["canvas_length"] / max(n, 1) for r, n in zip(rows, nfe)) / len(rows),
            "wall_time": wall, "tokens_per_second": gen / wall if wall > 0 else float("nan")}


def config_entry(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's overall and per-task metrics."""
    tasks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        tasks[row["task"]].append(row)
    per_task = {task: _stats(group) for task, group in tasks.items()}
    overall = _stats(rows)
    overall["score"] = sum(t["score"] for t in per_task.values()) / len(per_task)
    first = rows[0]
    entry = {"config_id": first["config_id"], "label": first["label"], "sampler": first["sampler"],
             "options": first["options"], "config": first["config"], **overall,
             "per_task": {task: stats["score"] for task, stats in per_task.items()},
             "per_task_metrics": per_task}
    if all("score_strict" in r for r in rows):  # ParallelBench records also carry the strict parse's score
        strict = {task: sum(r["score_strict"] for r in group) / len(group) for task, group in tasks.items()}
        entry.update(score_strict=sum(strict.values()) / len(strict), per_task_strict=strict)
    return entry


def policy_of(entry: dict[str, Any]) -> str:
    """The sampler name plus its non-sweep options (block length, cache, ...): one frontier curve each."""
    fixed = [f"{k}={v}" for k, v in entry["options"].items() if k not in SWEEP_OPTIONS]
    return " ".join([entry["sampler"], *fixed])


def _policies(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[policy_of(entry)].append(entry)
    return groups


def sweep_key(group: list[dict[str, Any]]) -> str | None:
    """The option that varies along a policy's sweep, if exactly one does."""
    keys = {k for e in group for k in e["options"]}
    varying = [k for k in sorted(keys) if len({repr(e["options"].get(k)) for e in group}) > 1]
    return varying[0] if len(varying) == 1 else None


def frontier_points(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A policy's configs in sweep order (by the varying option, else by TPS)."""
    key = sweep_key(group)
    if key is not None and all(isinstance(e["options"].get(key), (int, float)) for e in group):
        return sorted(group, key=lambda e: e["options"][key])
    return sorted(group, key=lambda e: e["tokens_per_step"])


def pbx(entries: list[dict[str, Any]], level: float) -> float | None:
    """PB`level`: best TPS reaching score >= level/100, interpolating adaptive sweeps; None if unreached."""
    target = level / 100.0
    best: float | None = None

    def consider(tps: float) -> None:
        nonlocal best
        best = tps if best is None else max(best, tps)

    for group in _policies(entries).values():
        points = frontier_points(group)
        for e in points:
            if e["score"] >= target:
                consider(e["tokens_per_step"])
        if any(e["config"].get("steps") is not None for e in points):
            continue  # a step-budget policy: only measured points count
        for a, b in zip(points, points[1:]):
            if (a["score"] - target) * (b["score"] - target) < 0:
                frac = (target - a["score"]) / (b["score"] - a["score"])
                consider(a["tokens_per_step"] + frac * (b["tokens_per_step"] - a["tokens_per_step"]))
    return best


def pbx_table(entries: list[dict[str, Any]], levels: Iterable[float] = PB_LEVELS) -> dict[str, Any]:
    """Overall and per-policy PBx for each level."""
    table: dict[str, Any] = {"overall": {f"PB{lv}": pbx(entries, lv) for lv in levels}}
    for name, group in _policies(entries).items():
        table[name] = {f"PB{lv}": pbx(group, lv) for lv in levels}
    return table


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Records -> {"configs": [entry per configuration, in first-seen order], "pbx": {...}}."""
    by_config: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_config.setdefault(record["config_id"], []).append(record)
    entries = [config_entry(rows) for rows in by_config.values()]
    return {"configs": entries, "pbx": pbx_table(entries) if entries else {}}

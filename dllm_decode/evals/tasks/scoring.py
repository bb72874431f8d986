"""Lenient answer parsing and strict per-task scoring.

Parsing is deliberately forgiving about *where* the answer is (chatty models
add text around it: we read the last ``[...]``) but scoring is strict about
*what* it contains.  Nothing here raises on any output string.
"""

from __future__ import annotations

from typing import Any

from .common import PUZZLE_TASKS, WAITING_LINE_TASKS, TaskSample, check_choice
from .puzzles import SIZE, is_valid_grid, respects_givens

_QUOTES = "\"'`\u2018\u2019\u201c\u201d"
_EXACT = ("copy", "reverse", "sort", "insert_index", "remove_index", "replace_index")


def parse_list(text: Any) -> list[str] | None:
    """Items between the last ``[`` and the next ``]``, or ``None`` if absent.

    Items are split on commas; surrounding whitespace and quotes are stripped
    and inner whitespace runs collapse to one space, so ``[ A B , C D ]`` and
    ``['A B', "C D"]`` both give ``["A B", "C D"]``.  ``[]`` gives ``[]``.
    """
    if not isinstance(text, str):
        return None
    start = text.rfind("[")
    if start < 0:
        return None
    end = text.find("]", start + 1)
    if end < 0:
        return None
    body = text[start + 1 : end]
    if not body.strip():
        return []
    items = []
    for part in body.split(","):
        item = " ".join(part.split()).strip(_QUOTES)
        items.append(" ".join(item.split()))
    return items


def parse_grid(text: Any) -> list[list[str]] | None:
    """A 4x4 grid from ``[r0, r1, r2, r3]`` with space-separated cells, else ``None``."""
    rows = parse_list(text)
    if rows is None or len(rows) != SIZE:
        return None
    grid = [row.split() for row in rows]
    if any(len(row) != SIZE for row in grid):
        return None
    return grid


def _score_line(task: str, data: dict[str, Any], out: list[str]) -> bool:
    """Whether ``out`` is a correct answer for a waiting-line instance."""
    names: list[str] = data["names"]
    if task in _EXACT:
        return out == data["reference"]
    if task == "shuffle":
        return len(out) == len(names) and sorted(out) == sorted(names) and out != names
    item = data.get("item")
    if task == "insert_random":
        return len(out) == len(names) + 1 and any(
            out[i] == item and out[:i] + out[i + 1 :] == names for i in range(len(out))
        )
    if task == "remove_random":
        return len(out) == len(names) - 1 and any(
            names[:i] + names[i + 1 :] == out for i in range(len(names))
        )
    if task == "replace_random":
        if len(out) != len(names):
            return False
        diff = [i for i, (a, b) in enumerate(zip(out, names)) if a != b]
        return len(diff) == 1 and out[diff[0]] == item
    raise ValueError(f"not a waiting-line task: {task!r}")  # pragma: no cover


def score_items(task: str, data: dict[str, Any], items: list[str]) -> float:
    """Score already-parsed list items for a waiting-line task (for callers with their own parse rule,
    e.g. ParallelBench's strict parse). `data` needs `names`, `reference` (exact tasks) and `item`."""
    check_choice("task", task, WAITING_LINE_TASKS)
    return float(_score_line(task, data, items))


def score(sample: TaskSample, output: Any) -> float:
    """1.0 if ``output`` solves ``sample`` else 0.0; never raises on the output.

    An unknown ``sample.task`` is a caller bug and raises ``ValueError``.
    """
    task = sample.task
    check_choice("task", task, WAITING_LINE_TASKS + PUZZLE_TASKS)
    data = sample.data
    if task in PUZZLE_TASKS:
        grid = parse_grid(output)
        if grid is None:
            return 0.0
        if task == "sudoku":
            return float(grid == data["solution"])
        ok = is_valid_grid(grid, data["symbols"], boxes=False) and respects_givens(
            grid, data["givens"]
        )
        return float(ok)
    out = parse_list(output)
    if out is None:
        return 0.0
    return float(_score_line(task, data, out))

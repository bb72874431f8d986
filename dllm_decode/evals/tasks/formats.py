"""Render task data as prompt/answer text in the two formats.

``compact`` is a space-separated closed-vocabulary token stream for tiny
word-level models (no in-context example); ``natural`` is chat-style English
with one worked example.  Both put the answer in brackets with comma-separated
items so a single parser (:func:`scoring.parse_list`) reads either.
"""

from __future__ import annotations

from typing import Any

from .common import ALL_TASKS, INDEX_BASES, MAX_LENGTH, SORT_KEYS
from .names import FIRST_NAMES, LAST_NAMES
from .puzzles import BLANK, LATIN_SYMBOL_POOL, SUDOKU_SYMBOLS


def render_list(items: list[str], fmt: str) -> str:
    """``[ a , b ]`` (compact) or ``[a, b]`` (natural)."""
    if fmt == "compact":
        return "[ " + " , ".join(items) + " ]" if items else "[ ]"
    return "[" + ", ".join(items) + "]"


def render_grid(grid: list[list[Any]], fmt: str) -> str:
    """Rows as list items, cells space-separated, blanks (``None``) as ``_``."""
    rows = [" ".join(BLANK if x is None else str(x) for x in row) for row in grid]
    return render_list(rows, fmt)


def answer_text(task: str, data: dict[str, Any], fmt: str) -> str:
    """The reference answer exactly as a perfect model would write it."""
    if task in ("latin", "sudoku"):
        return render_grid(data["solution"], fmt)
    return render_list(data["reference"], fmt)


# ---------------------------------------------------------------- compact


def compact_prompt(task: str, data: dict[str, Any]) -> str:
    """``task [args] [ list ]`` with every token from :func:`compact_vocabulary`."""
    if task == "latin":
        return " ".join(["latin", *data["symbols"], render_grid(data["givens"], "compact")])
    if task == "sudoku":
        return "sudoku " + render_grid(data["givens"], "compact")
    head = [task]
    if task == "sort":
        head.append(data["sort_key"])
    if "index" in data:
        head.append(str(data["index"]))
    if "item" in data:
        head.extend(data["item"].split())
    return " ".join(head) + " " + render_list(data["names"], "compact")


def compact_vocabulary() -> list[str]:
    """Every token any compact prompt or answer can contain, sorted."""
    max_index = MAX_LENGTH + max(INDEX_BASES)
    assert max_index <= 9, "indices must stay single-digit tokens"
    vocab = set(FIRST_NAMES) | set(LAST_NAMES) | set(ALL_TASKS) | set(SORT_KEYS)
    vocab |= {str(d) for d in range(10)} | {"[", "]", ",", BLANK}
    vocab |= set(LATIN_SYMBOL_POOL) | set(SUDOKU_SYMBOLS)
    return sorted(vocab)


# ---------------------------------------------------------------- natural

_LIST_REPLY = "Reply with the resulting line as a list in square brackets, names separated by commas."
_GRID_REPLY = (
    "Reply with the completed grid in square brackets: rows separated by commas, "
    "cells within a row separated by spaces."
)


def _position(data: dict[str, Any]) -> str:
    base = data["index_base"]
    return f"position {data['index']} (positions count from {base}, so the front of the line is position {base})"


def _instruction(task: str, data: dict[str, Any]) -> str:
    """The task-specific sentence of a natural prompt."""
    item = data.get("item", "")
    if task == "copy":
        return "Write the line out again exactly as it is."
    if task == "reverse":
        return "Reverse the line, so the person at the back is now at the front."
    if task == "sort":
        key, other = ("last", "first") if data["sort_key"] == "last" else ("first", "last")
        return (
            f"Sort the line alphabetically by {key} name; if two people share a {key} "
            f"name, order them by {other} name."
        )
    if task == "shuffle":
        return "Shuffle the line: list the same people, but in a different order."
    if task == "insert_index":
        return f"{item} joins the line at {_position(data)}. Insert {item} there."
    if task == "insert_random":
        return f"{item} joins the line. Insert {item} at any one position you like."
    if task == "remove_index":
        return f"The person at {_position(data)} leaves. Remove that person."
    if task == "remove_random":
        return "One person leaves the line. Remove any one person you like."
    if task == "replace_index":
        return f"The person at {_position(data)} hands their spot to {item}. Replace that person with {item}."
    if task == "replace_random":
        return f"Someone hands their spot to {item}. Replace any one person with {item}."
    raise ValueError(f"not a waiting-line task: {task!r}")  # pragma: no cover


def natural_question(task: str, data: dict[str, Any]) -> str:
    """One self-contained natural-language question (no example)."""
    if task == "latin":
        syms = ", ".join(data["symbols"])
        return (
            f"Fill in this 4x4 grid so that every row and every column contains each of "
            f"the symbols {syms} exactly once. Cells marked _ are empty; keep every "
            f"symbol that is already filled in. Grid: {render_grid(data['givens'], 'natural')}. "
            + _GRID_REPLY
        )
    if task == "sudoku":
        return (
            "Solve this 4x4 Sudoku: fill every empty cell (marked _) with a digit from 1 to 4 "
            "so that each row, each column and each of the four 2x2 boxes contains every digit "
            f"exactly once. Grid: {render_grid(data['givens'], 'natural')}. " + _GRID_REPLY
        )
    line = render_list(data["names"], "natural")
    return f"Here is a waiting line, front first: {line}. {_instruction(task, data)} {_LIST_REPLY}"


def natural_prompt(task: str, data: dict[str, Any], example: dict[str, Any]) -> str:
    """A worked example (question and answer) followed by the real question."""
    return (
        f"Example question: {natural_question(task, example)}\n"
        f"Example answer: {answer_text(task, example, 'natural')}\n\n"
        f"Question: {natural_question(task, data)}"
    )

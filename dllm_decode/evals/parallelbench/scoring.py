"""ParallelBench's metric names mapped onto the library's scorer, with the authors' plain and strict parses.

List metrics reuse the waiting-line rules of `tasks.scoring` (exact match, shuffle, single random edit);
only the parse of the model's text follows the authors:
- plain: the text after the last `[` (else all of it) up to the next `]` (else the end), split on
  commas, each item stripped of double quotes and spaces, empty items dropped;
- strict: both brackets required, items split on exactly `", "`, each item wrapped in double quotes
  with no quote inside (`"A", "B"`).
The puzzles follow the authors' grid rules (`latin_square_score`: the first `size` lines whose cells are
the symbol set must form a Latin square; `sudoku_score`: the 4x4 digits must equal the solution, plain
reading digits per line, strict requiring exactly four lines of four digits). Every score is 0.0 or 1.0.
"""
from __future__ import annotations

from typing import Any

from ..tasks.scoring import score_items

# metric name -> the waiting-line rule of `tasks.scoring` it equals
LIST_RULES = {"list_match_score": "copy", "list_shuffle_score": "shuffle",
              "list_random_insert_score": "insert_random", "list_random_remove_score": "remove_random",
              "list_random_replace_score": "replace_random"}
PUZZLE_METRICS = ("latin_square_score", "sudoku_score")
METRICS = tuple(LIST_RULES) + PUZZLE_METRICS
SUDOKU_SIZE = 4


def parse_items(text: str, strict: bool) -> list[str] | None:
    """The authors' list parse (see the module docstring); None when the strict form is not met."""
    has_open = "[" in text
    body = text.rsplit("[", 1)[1] if has_open else text
    has_close = "]" in body
    body = body.split("]", 1)[0]
    if not strict:
        return [part.strip('" ') for part in body.split(",") if part.strip()]
    if not (has_open and has_close):
        return None
    items = []
    for part in body.split(", "):
        # a lone `"` both starts and ends with a quote, so it passes as "", as in the authors' rule
        if not (part.startswith('"') and part.endswith('"')) or '"' in part[1:-1]:
            return None
        items.append(part[1:-1])
    return items


def _sudoku(text: str, strict: bool) -> list[list[int]] | None:
    lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
    if strict:
        ok = len(lines) == SUDOKU_SIZE and all(len(r) == SUDOKU_SIZE and r.isdecimal() for r in lines)
        return [[int(c) for c in r] for r in lines] if ok else None
    rows = [[int(c) for c in line if c.isdecimal()] for line in text.replace(" ", "").replace(",", "").split("\n")]
    grid = [row for row in rows if len(row) == SUDOKU_SIZE]
    return grid if len(grid) == SUDOKU_SIZE else None


def _latin(text: str, data: dict[str, Any]) -> float:
    symbols = set(data["symbols"])
    size = len(symbols)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    rows = [[c.strip() for c in line.split(",")] for line in lines]
    rows = [row for row in rows if set(row) == symbols][:size]
    if len(rows) < size:
        return 0.0
    if any(set(row) != symbols for row in rows) or any(set(col) != symbols for col in zip(*rows)):
        return 0.0
    first = data.get("first_row")
    return float(first is None or rows[0] == list(first))


def _list_score(metric: str, data: dict[str, Any], text: str, strict: bool) -> float:
    items = parse_items(text, strict)
    return 0.0 if items is None else score_items(LIST_RULES[metric], data, items)


def grade(metric: str, data: dict[str, Any], text: str) -> dict[str, float]:
    """{"score": plain, "score_strict": strict} for one output under the task's metric."""
    if metric in LIST_RULES:
        return {"score": _list_score(metric, data, text, False), "score_strict": _list_score(metric, data, text, True)}
    if metric == "latin_square_score":  # the authors' rule has no strict variant
        plain = _latin(text, data)
        return {"score": plain, "score_strict": plain}
    if metric == "sudoku_score":
        return {name: float(_sudoku(text, strict) == data["solution"])
                for name, strict in (("score", False), ("score_strict", True))}
    raise ValueError(f"`metric` must be one of {list(METRICS)}, got {metric!r}")


def _list_data(metric: str, answer: Any, where: str) -> dict[str, Any]:
    if metric == "list_match_score":
        if not isinstance(answer, str):
            raise ValueError(f"{where}: `answer` must be the reference list as a string for {metric}, got {answer!r}")
        reference = parse_items(answer, strict=False)
        return {"names": reference, "reference": reference}
    need = ("input",) if metric in ("list_shuffle_score", "list_random_remove_score") else ("input", "word")
    if not isinstance(answer, dict) or any(k not in answer for k in need) or not isinstance(answer["input"], list):
        raise ValueError(f"{where}: `answer` must be a dict with {list(need)} (`input` a list) for {metric}, "
                         f"got {answer!r}")
    if answer.get("n_words", 1) != 1:
        raise ValueError(f"{where}: `answer.n_words` must be 1 (one edited item), got {answer['n_words']!r}")
    return {"names": list(answer["input"]), "item": answer.get("word")}


def check_reference(metric: str, answer: Any, where: str) -> dict[str, Any]:
    """The scoring data of one record's `answer` under `metric`, or a ValueError naming the record."""
    if metric in LIST_RULES:
        return _list_data(metric, answer, where)
    if metric == "latin_square_score":
        if not isinstance(answer, dict) or not isinstance(answer.get("symbols"), list):
            raise ValueError(f"{where}: `answer` must be a dict with a `symbols` list for {metric}, got {answer!r}")
        return {"symbols": answer["symbols"], "first_row": answer.get("first_row")}
    if metric == "sudoku_score":
        solution = _sudoku(answer, strict=True) if isinstance(answer, str) else None
        if solution is None:
            raise ValueError(f"{where}: `answer` must be a 4x4 solution as four lines of four digits for {metric}, "
                             f"got {answer!r}")
        return {"solution": solution}
    return {}


"""Shared types, task registries, argument checks and hash-free seeding."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

WAITING_LINE_TASKS: tuple[str, ...] = (
    "copy",
    "reverse",
    "sort",
    "shuffle",
    "insert_index",
    "insert_random",
    "remove_index",
    "remove_random",
    "replace_index",
    "replace_random",
)
PUZZLE_TASKS: tuple[str, ...] = ("latin", "sudoku")
ALL_TASKS: tuple[str, ...] = WAITING_LINE_TASKS + PUZZLE_TASKS

SUITES: dict[str, tuple[str, ...]] = {
    "waiting-line": WAITING_LINE_TASKS,
    "puzzles": PUZZLE_TASKS,
    "all": ALL_TASKS,
    "index": ("copy", "reverse", "sort", "insert_index", "remove_index", "replace_index"),
}

FORMATS: tuple[str, ...] = ("compact", "natural")
SORT_KEYS: tuple[str, ...] = ("last", "first")
INDEX_BASES: tuple[int, ...] = (0, 1)
# Lengths are capped so every index (<= 8 + base) is a single digit token.
MIN_LENGTH, MAX_LENGTH = 2, 8


@dataclass(frozen=True)
class TaskSample:
    """One prompt with its reference (perfect) answer and the structured input.

    ``data`` is the source of truth for scoring; ``prompt``/``answer`` are its
    rendering in one format, so the same ``data`` scores identically in both.
    """

    task: str
    id: str
    prompt: str
    answer: str
    data: dict[str, Any]


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise the suite's uniform ``ValueError`` when ``value`` is not allowed."""
    # Match type too, so True/1.0 cannot pass as the index base 1.
    ok = any(type(value) is type(c) and value == c for c in choices)
    if not ok:
        raise ValueError(f"`{name}` must be one of {list(choices)!r}, got {value!r}")


def check_length(name: str, length: Any) -> int:
    """Validate one list length / puzzle difficulty level."""
    if isinstance(length, bool) or not isinstance(length, int) or not (
        MIN_LENGTH <= length <= MAX_LENGTH
    ):
        raise ValueError(
            f"`{name}` must be an integer in [{MIN_LENGTH}, {MAX_LENGTH}], got {length!r}"
        )
    return length


def derive_rng(*parts: Any) -> random.Random:
    """A ``Random`` seeded from ``parts`` via SHA-256.

    Python's ``hash()`` of strings is salted per process, so it would break
    reproducibility across runs; a digest of the parts' reprs does not.
    """
    key = "\x1f".join(repr(p) for p in parts).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))

"""Procedural ParallelBench-style tasks: waiting-line list edits and 4x4 puzzles.

Generate seeded samples with :func:`make_samples` / :func:`make_suite` (or
:func:`random_sample` for endless training data) and grade outputs with
:func:`score`, which parses the last ``[...]`` of any string and never raises.
"""

from .common import (
    ALL_TASKS,
    FORMATS,
    INDEX_BASES,
    PUZZLE_TASKS,
    SORT_KEYS,
    SUITES,
    WAITING_LINE_TASKS,
    TaskSample,
)
from .formats import compact_vocabulary
from .names import FIRST_NAMES, LAST_NAMES
from .puzzles import count_solutions, is_valid_grid
from .samples import make_samples, make_suite, random_sample
from .scoring import parse_grid, parse_list, score

__all__ = [
    "ALL_TASKS",
    "FIRST_NAMES",
    "FORMATS",
    "INDEX_BASES",
    "LAST_NAMES",
    "PUZZLE_TASKS",
    "SORT_KEYS",
    "SUITES",
    "WAITING_LINE_TASKS",
    "TaskSample",
    "compact_vocabulary",
    "count_solutions",
    "is_valid_grid",
    "make_samples",
    "make_suite",
    "parse_grid",
    "parse_list",
    "random_sample",
    "score",
]

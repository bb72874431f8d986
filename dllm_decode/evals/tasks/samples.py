"""Seeded sample generation: fixed evaluation suites and endless training draws."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .common import (
    ALL_TASKS,
    FORMATS,
    INDEX_BASES,
    PUZZLE_TASKS,
    SORT_KEYS,
    SUITES,
    TaskSample,
    check_choice,
    check_length,
    derive_rng,
)
from .formats import answer_text, compact_prompt, natural_prompt
from .puzzles import make_latin_instance, make_sudoku_instance
from .waiting_line import make_line_instance

_SEED_TAG = "dllm_decode.evals.tasks/v1"


def _check_options(task: str, fmt: str, sort_key: str, index_base: int) -> None:
    check_choice("task", task, ALL_TASKS)
    check_choice("fmt", fmt, FORMATS)
    check_choice("sort_key", sort_key, SORT_KEYS)
    check_choice("index_base", index_base, INDEX_BASES)


def _instance(rng: random.Random, task: str, length: int, **opts: Any) -> dict[str, Any]:
    """Structured data for one instance; ``length`` is a difficulty level for puzzles."""
    if task == "latin":
        return make_latin_instance(rng, length)
    if task == "sudoku":
        return make_sudoku_instance(rng, length)
    return make_line_instance(rng, task, length, **opts)


def _render(
    task: str, sample_id: str, data: dict[str, Any], fmt: str, example: dict[str, Any] | None
) -> TaskSample:
    if fmt == "compact":
        prompt = compact_prompt(task, data)
    else:
        assert example is not None
        prompt = natural_prompt(task, data, example)
    return TaskSample(task, sample_id, prompt, answer_text(task, data, fmt), data)


def make_samples(
    task: str,
    *,
    seed: int = 0,
    per_length: int = 25,
    lengths: Sequence[int] = (3, 4, 5, 6),
    fmt: str = "compact",
    sort_key: str = "last",
    index_base: int = 0,
    legacy: bool = False,
) -> list[TaskSample]:
    """``per_length`` samples for each entry of ``lengths``, fully reproducible.

    Each (seed, task, length) gets its own SHA-256-derived stream, so tasks
    sharing a seed see different names, and the natural format's examples come
    from a second stream so compact and natural samples share identical
    ``data``.  For puzzles ``length`` is a difficulty level (see
    :func:`puzzles.latin_givens_for` and :func:`puzzles.sudoku_blanks_for`).
    """
    _check_options(task, fmt, sort_key, index_base)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be an integer, got {seed!r}")
    if isinstance(per_length, bool) or not isinstance(per_length, int) or per_length < 1:
        raise ValueError(f"`per_length` must be a positive integer, got {per_length!r}")
    lengths = tuple(check_length("lengths", n) for n in lengths)
    if not lengths or len(set(lengths)) != len(lengths):
        raise ValueError(f"`lengths` must be non-empty and distinct, got {lengths!r}")
    opts: dict[str, Any] = {}
    if task not in PUZZLE_TASKS:
        opts = {"sort_key": sort_key, "index_base": index_base, "legacy": bool(legacy)}
    samples = []
    for length in lengths:
        rng = derive_rng(_SEED_TAG, seed, task, length)
        ex_rng = derive_rng(_SEED_TAG, "example", seed, task, length)
        for i in range(per_length):
            data = _instance(rng, task, length, **opts)
            example = _instance(ex_rng, task, length, **opts) if fmt == "natural" else None
            samples.append(_render(task, f"{task}-l{length}-{i:02d}", data, fmt, example))
    return samples


def make_suite(suite: str = "waiting-line", **kwargs: Any) -> list[TaskSample]:
    """All tasks of a named suite (see ``SUITES``), concatenated in task order."""
    check_choice("suite", suite, tuple(SUITES))
    return [s for task in SUITES[suite] for s in make_samples(task, **kwargs)]


def random_sample(
    rng: random.Random,
    task: str,
    length: int,
    *,
    fmt: str = "compact",
    sort_key: str = "last",
    index_base: int = 0,
    legacy: bool = False,
    sample_id: str | None = None,
) -> TaskSample:
    """One fresh instance drawn from ``rng`` (for endless training data).

    The natural format's in-context example is drawn from the same ``rng``
    after the instance.
    """
    _check_options(task, fmt, sort_key, index_base)
    if not isinstance(rng, random.Random):
        raise ValueError(f"`rng` must be a random.Random, got {type(rng).__name__}")
    check_length("length", length)
    opts: dict[str, Any] = {}
    if task not in PUZZLE_TASKS:
        opts = {"sort_key": sort_key, "index_base": index_base, "legacy": bool(legacy)}
    data = _instance(rng, task, length, **opts)
    example = _instance(rng, task, length, **opts) if fmt == "natural" else None
    return _render(task, sample_id or f"{task}-l{length}-random", data, fmt, example)

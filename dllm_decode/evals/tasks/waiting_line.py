"""Waiting-line task instances: a list of names plus one list operation.

Generation returns only structured data (names, index, item, reference);
rendering into a prompt format lives in :mod:`formats`, validity in
:mod:`scoring`.
"""

from __future__ import annotations

import random
from typing import Any

from .names import draw_names, split_name


def sort_names(names: list[str], key: str) -> list[str]:
    """Sort full names by ``key`` ("last" or "first"), ties by the other half."""
    if key == "last":
        return sorted(names, key=lambda n: split_name(n)[::-1])
    return sorted(names, key=split_name)


def _derangement_order(rng: random.Random, names: list[str]) -> list[str]:
    """A uniformly random permutation that differs from the input order."""
    while True:
        out = list(names)
        rng.shuffle(out)
        if out != names:
            return out


def make_line_instance(
    rng: random.Random,
    task: str,
    length: int,
    *,
    sort_key: str = "last",
    index_base: int = 0,
    legacy: bool = False,
) -> dict[str, Any]:
    """Draw one instance of ``task`` over ``length`` names.

    ``reference`` is one correct output list; for the random-edit tasks and
    shuffle it is just one of several accepted answers.  Indices are drawn
    0-based so the same seed yields the same instance for either base; the
    shown ``index`` adds ``index_base``.
    """
    names = draw_names(rng, length)
    data: dict[str, Any] = {"names": names}
    if task == "copy":
        ref = list(names)
    elif task == "reverse":
        ref = names[::-1]
    elif task == "sort":
        # The original benchmark said "last name" but sorted by first name;
        # ``legacy`` reproduces that mismatch on purpose.
        prompt_key = "last" if legacy else sort_key
        used_key = "first" if legacy else sort_key
        data.update(sort_key=prompt_key, sorted_by=used_key, legacy=bool(legacy))
        ref = sort_names(names, used_key)
    elif task == "shuffle":
        ref = _derangement_order(rng, names)
    elif task in ("insert_index", "insert_random"):
        item = draw_names(rng, 1, exclude=names)[0]
        pos = rng.randint(0, length)
        ref = names[:pos] + [item] + names[pos:]
        data["item"] = item
        if task == "insert_index":
            data.update(index=pos + index_base, index_base=index_base)
    elif task in ("remove_index", "remove_random"):
        pos = rng.randrange(length)
        ref = names[:pos] + names[pos + 1 :]
        if task == "remove_index":
            data.update(index=pos + index_base, index_base=index_base)
    elif task in ("replace_index", "replace_random"):
        item = draw_names(rng, 1, exclude=names)[0]
        pos = rng.randrange(length)
        ref = names[:pos] + [item] + names[pos + 1 :]
        data["item"] = item
        if task == "replace_index":
            data.update(index=pos + index_base, index_base=index_base)
    else:  # pragma: no cover - callers validate the task name first
        raise ValueError(f"not a waiting-line task: {task!r}")
    data["reference"] = ref
    return data

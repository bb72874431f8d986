"""Answer sets of the task suite's compact prompts: every answer the scorer accepts, as canvas token ids.

A compact prompt is `task [args] [ list ]` (see `evals.tasks.formats.compact_prompt`); its answer set is
rendered exactly as a perfect model writes it (`formats.render_list` / `render_grid`), then EOS to the
canvas end. Sizes: deterministic tasks 1; shuffle n! - 1; insert_random n + 1; remove_random n;
replace_random n; latin every completion of the givens (576 with none given); sudoku 1.
The prompts do not say the index base of the `*_index` tasks; `index_base` (the suite's default 0) does.
"""
from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

from ..evals.tasks.common import INDEX_BASES, PUZZLE_TASKS, SORT_KEYS, WAITING_LINE_TASKS
from ..evals.tasks.formats import render_grid, render_list
from ..evals.tasks.puzzles import BLANK, SIZE, SUDOKU_SYMBOLS, is_valid_grid, respects_givens
from ..evals.tasks.waiting_line import sort_names

ITEM_TASKS = ("insert_index", "insert_random", "replace_index", "replace_random")
INDEX_TASKS = ("insert_index", "remove_index", "replace_index")
MEMO_ELEMENTS = 1 << 24  # answer-tensor elements kept across requests (128 MB of int64)


class PromptError(ValueError):
    """A prompt the oracle cannot read as a compact task-suite prompt."""


def split_items(words: list[str]) -> list[list[str]]:
    """`A B , C D` -> [["A", "B"], ["C", "D"]]; an empty body is an empty list."""
    if not words:
        return []
    items, item = [], []
    for word in words:
        if word == ",":
            items.append(item)
            item = []
        else:
            item.append(word)
    return items + [item]


def parse_prompt(words: list[str], index_base: int = 0) -> tuple[str, dict[str, Any]]:
    """Compact prompt words -> (task, data) with the fields the scorer reads; PromptError if unreadable."""
    if "[" not in words or words[-1] != "]" or words.count("]") != 1:
        raise PromptError("a compact prompt ends with its only list `[ ... ]`")
    open_ = words.index("[")
    head, items = words[:open_], split_items(words[open_ + 1:-1])
    if not head or any(not item for item in items):
        raise PromptError("a compact prompt is `task [args] [ item , item ]` with non-empty items")
    task, args = head[0], head[1:]
    if task in PUZZLE_TASKS:
        return task, puzzle_data(task, args, items)
    if task not in WAITING_LINE_TASKS:
        raise PromptError(f"the first word must be a task of the suite {list(WAITING_LINE_TASKS + PUZZLE_TASKS)}")
    data: dict[str, Any] = {"names": [" ".join(item) for item in items]}
    if task == "sort":
        if len(args) != 1 or args[0] not in SORT_KEYS:
            raise PromptError(f"sort takes one key from {list(SORT_KEYS)}")
        data["sort_key"], args = args[0], []
    if task in INDEX_TASKS:
        if not args or not args[0].isdigit():
            raise PromptError(f"{task} takes an index digit after the task")
        data.update(index=int(args[0]), index_base=index_base)
        args = args[1:]
    if task in ITEM_TASKS:
        if not args:
            raise PromptError(f"{task} takes an item before the list")
        data["item"], args = " ".join(args), []
    if args:
        raise PromptError(f"{task} takes no further arguments, got {args}")
    return task, data


def puzzle_data(task: str, args: list[str], rows: list[list[str]]) -> dict[str, Any]:
    symbols = list(args) if task == "latin" else list(SUDOKU_SYMBOLS)
    if task == "sudoku" and args:
        raise PromptError("sudoku takes no arguments before its grid")
    if len(symbols) != SIZE or len(set(symbols)) != SIZE or len(rows) != SIZE or any(len(r) != SIZE for r in rows):
        raise PromptError(f"{task} needs {SIZE} distinct symbols and a {SIZE}x{SIZE} grid")
    givens = [[None if cell == BLANK else cell for cell in row] for row in rows]
    if any(cell is not None and cell not in symbols for row in givens for cell in row):
        raise PromptError(f"{task} givens must use the symbols {symbols}")
    return {"symbols": symbols, "givens": givens}


def line_answers(task: str, data: dict[str, Any]) -> list[list[str]]:
    """Every list the scorer accepts for a waiting-line instance, without duplicates."""
    names, item = data["names"], data.get("item")
    n = len(names)
    if task in INDEX_TASKS:
        pos = data["index"] - data["index_base"]
        limit = n if task == "insert_index" else n - 1
        if not 0 <= pos <= limit:
            raise PromptError(f"index {data['index']} is outside the list (base {data['index_base']})")
    if task == "copy":
        found = [names]
    elif task == "reverse":
        found = [names[::-1]]
    elif task == "sort":
        found = [sort_names(names, data["sort_key"])]
    elif task == "shuffle":
        found = [list(p) for p in itertools.permutations(names) if list(p) != names]
    elif task == "insert_index":
        found = [names[:pos] + [item] + names[pos:]]
    elif task == "insert_random":
        found = [names[:i] + [item] + names[i:] for i in range(n + 1)]
    elif task == "remove_index":
        found = [names[:pos] + names[pos + 1:]]
    elif task == "remove_random":
        found = [names[:i] + names[i + 1:] for i in range(n)]
    elif task == "replace_index":
        found = [names[:pos] + [item] + names[pos + 1:]]
    else:  # replace_random: exactly one position differs, and it holds the item
        found = [names[:i] + [item] + names[i + 1:] for i in range(n) if names[i] != item]
    return [list(a) for a in dict.fromkeys(tuple(a) for a in found)]


def grid_answers(task: str, data: dict[str, Any]) -> list[list[list[str]]]:
    """Every completion of the givens: rows are permutations of the symbols, columns (and boxes) checked."""
    symbols, givens = data["symbols"], data["givens"]
    rows = [[list(p) for p in itertools.permutations(symbols)
             if all(g is None or g == c for g, c in zip(given, p))] for given in givens]
    boxes = task == "sudoku"
    found: list[list[list[str]]] = []

    def extend(grid: list[list[str]]) -> None:  # rows top to bottom, no symbol twice in a column
        if len(grid) == SIZE:
            if is_valid_grid(grid, symbols, boxes=boxes) and respects_givens(grid, givens):
                found.append(grid)
            return
        for row in rows[len(grid)]:
            if all(row[c] != above[c] for above in grid for c in range(SIZE)):
                extend(grid + [row])

    extend([])
    return found


def answer_words(task: str, data: dict[str, Any]) -> list[list[str]]:
    """Each accepted answer as the compact words a perfect model writes."""
    if task in PUZZLE_TASKS:
        return [render_grid(grid, "compact").split() for grid in grid_answers(task, data)]
    return [render_list(items, "compact").split() for items in line_answers(task, data)]


class AnswerBook:
    """Prompt token ids -> the answer set as a LongTensor [A, G] (words, then EOS to the canvas end), memoised."""

    def __init__(self, tokenizer: Any, eos_id: int, index_base: int = 0) -> None:
        if index_base not in INDEX_BASES:
            raise ValueError(f"`index_base` must be one of {list(INDEX_BASES)}, got {index_base!r}")
        self.tokenizer, self.eos_id, self.index_base = tokenizer, eos_id, index_base
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self.close_id = self.vocab["]"]
        self.memo: OrderedDict[tuple[tuple[int, ...], int], Tensor] = OrderedDict()

    def prompt_ends(self, ids: Tensor, seen: Tensor) -> Tensor:
        """The column [B] after each row's first seen `]` (a compact prompt ends with its list); -1 if none."""
        close = (ids == self.close_id) & seen
        return torch.where(close.any(1), close.float().argmax(1).long() + 1, torch.full_like(ids[:, 0], -1))

    @staticmethod
    def unreadable(words: str) -> str:
        return (f"the oracle cannot read the prompt {words!r}: a compact task-suite prompt ends with its list "
                "`[ ... ]`, e.g. 'reverse [ Gemma Murray , Gavin Turner ]'")

    def answers(self, prompt: tuple[int, ...], gen_length: int) -> Tensor:
        key = (prompt, gen_length)
        if key in self.memo:
            self.memo.move_to_end(key)
            return self.memo[key]
        table = self.enumerate(prompt, gen_length)
        self.memo[key] = table
        while sum(t.numel() for t in self.memo.values()) > MEMO_ELEMENTS and len(self.memo) > 1:
            self.memo.popitem(last=False)
        return table

    def enumerate(self, prompt: tuple[int, ...], gen_length: int) -> Tensor:
        words = self.tokenizer.convert_ids_to_tokens(list(prompt))
        text = " ".join(words)
        try:
            task, data = parse_prompt(words, self.index_base)
            found = answer_words(task, data)
        except PromptError as err:
            raise ValueError(f"the oracle cannot read the prompt {text!r}: {err}; it answers compact task-suite "
                             "prompts such as 'reverse [ Gemma Murray , Gavin Turner ]'") from None
        if not found:
            raise ValueError(f"the prompt {text!r} has no valid answer (e.g. a grid whose givens clash); the oracle "
                             "needs at least one")
        longest = max(len(a) for a in found)
        if longest > gen_length:
            raise ValueError(f"`gen_length` must be >= {longest} for the oracle to write the answers of {text!r}, "
                             f"got {gen_length}; e.g. gen_length=32")
        table = torch.full((len(found), gen_length), self.eos_id, dtype=torch.long)
        for a, answer in enumerate(found):  # once per prompt, at enumeration, never in a decoding step
            table[a, :len(answer)] = torch.tensor([self.vocab[w] for w in answer])
        return table

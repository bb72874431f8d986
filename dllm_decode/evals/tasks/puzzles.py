"""4x4 Latin-square and Sudoku puzzles with a tiny exhaustive solver.

At 4x4 a plain backtracking search is instant, so we use it both to build
random full grids and to certify that a Sudoku's givens admit exactly one
solution.
"""

from __future__ import annotations

import random
from typing import Any, Optional

SIZE = 4
LATIN_SYMBOL_POOL: tuple[str, ...] = tuple("ABCDEFGH")
SUDOKU_SYMBOLS: tuple[str, ...] = ("1", "2", "3", "4")
BLANK = "_"

Cell = Optional[str]
Grid = list[list[Cell]]


def _allowed(grid: Grid, r: int, c: int, sym: str, boxes: bool) -> bool:
    """Whether ``sym`` can go at (r, c) without repeating in row/col/box."""
    if any(grid[r][j] == sym for j in range(SIZE)):
        return False
    if any(grid[i][c] == sym for i in range(SIZE)):
        return False
    if boxes:
        br, bc = r - r % 2, c - c % 2
        if any(grid[i][j] == sym for i in (br, br + 1) for j in (bc, bc + 1)):
            return False
    return True


def _search(
    grid: Grid, symbols: tuple[str, ...], boxes: bool, rng: random.Random | None, limit: int
) -> tuple[int, Grid | None]:
    """Count solutions up to ``limit``; also return the first one found."""
    work = [row[:] for row in grid]
    empties = [(r, c) for r in range(SIZE) for c in range(SIZE) if work[r][c] is None]
    count, first = 0, None

    def go(k: int) -> None:
        nonlocal count, first
        if count >= limit:
            return
        if k == len(empties):
            count += 1
            if first is None:
                first = [row[:] for row in work]
            return
        r, c = empties[k]
        order = list(symbols)
        if rng is not None:
            rng.shuffle(order)
        for sym in order:
            if _allowed(work, r, c, sym, boxes):
                work[r][c] = sym
                go(k + 1)
                work[r][c] = None

    go(0)
    return count, first


def count_solutions(givens: Grid, symbols: tuple[str, ...], boxes: bool, limit: int = 2) -> int:
    """Number of completions of ``givens`` (stops counting at ``limit``)."""
    return _search(givens, tuple(symbols), boxes, None, limit)[0]


def random_full_grid(rng: random.Random, symbols: tuple[str, ...], boxes: bool) -> list[list[str]]:
    """A uniformly-shuffled-search full grid (Latin square, or Sudoku if ``boxes``)."""
    empty: Grid = [[None] * SIZE for _ in range(SIZE)]
    _, grid = _search(empty, tuple(symbols), boxes, rng, 1)
    assert grid is not None
    return [[str(x) for x in row] for row in grid]


def is_valid_grid(grid: Any, symbols: tuple[str, ...] | list[str], boxes: bool) -> bool:
    """Whether ``grid`` is a full 4x4 grid with each row/col (/box) a permutation."""
    want = sorted(symbols)
    if not isinstance(grid, list) or len(grid) != SIZE:
        return False
    if any(not isinstance(row, list) or len(row) != SIZE for row in grid):
        return False
    groups = [list(row) for row in grid] + [[grid[i][j] for i in range(SIZE)] for j in range(SIZE)]
    if boxes:
        for br in (0, 2):
            for bc in (0, 2):
                groups.append([grid[i][j] for i in (br, br + 1) for j in (bc, bc + 1)])
    return all(sorted(g) == want for g in groups)


def respects_givens(grid: list[list[str]], givens: Grid) -> bool:
    """Whether every pre-filled cell of ``givens`` is kept in ``grid``."""
    return all(
        g is None or grid[r][c] == g for r, row in enumerate(givens) for c, g in enumerate(row)
    )


def latin_givens_for(length: int) -> int:
    """Difficulty knob: level ``length`` pre-fills ``length - 3`` cells (>= 0)."""
    return max(0, length - 3)


def sudoku_blanks_for(length: int) -> int:
    """Difficulty knob: level ``length`` aims for ``2 * length`` blanks (<= 12)."""
    return min(12, 2 * length)


def make_latin_instance(rng: random.Random, length: int) -> dict[str, Any]:
    """Four symbols from the pool plus a few givens taken from a full square."""
    symbols = sorted(rng.sample(LATIN_SYMBOL_POOL, SIZE))
    solution = random_full_grid(rng, tuple(symbols), boxes=False)
    cells = rng.sample(range(SIZE * SIZE), latin_givens_for(length))
    givens: Grid = [[None] * SIZE for _ in range(SIZE)]
    for k in cells:
        givens[k // SIZE][k % SIZE] = solution[k // SIZE][k % SIZE]
    return {"symbols": symbols, "givens": givens, "solution": solution}


def make_sudoku_instance(rng: random.Random, length: int) -> dict[str, Any]:
    """Blank cells of a full Sudoku one by one while the solution stays unique."""
    symbols = SUDOKU_SYMBOLS
    solution = random_full_grid(rng, symbols, boxes=True)
    givens: Grid = [list(row) for row in solution]
    target, blanks = sudoku_blanks_for(length), 0
    for k in rng.sample(range(SIZE * SIZE), SIZE * SIZE):
        if blanks >= target:
            break
        r, c = divmod(k, SIZE)
        keep, givens[r][c] = givens[r][c], None
        if count_solutions(givens, symbols, boxes=True) == 1:
            blanks += 1
        else:
            givens[r][c] = keep
    return {"symbols": list(symbols), "givens": givens, "solution": solution}

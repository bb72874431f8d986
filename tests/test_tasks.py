"""Tests for the procedural waiting-line and puzzle task suite."""

from __future__ import annotations

import json
import random

import pytest

from dllm_decode.evals.tasks import (
    ALL_TASKS,
    FIRST_NAMES,
    LAST_NAMES,
    PUZZLE_TASKS,
    SUITES,
    WAITING_LINE_TASKS,
    TaskSample,
    compact_vocabulary,
    count_solutions,
    is_valid_grid,
    make_samples,
    make_suite,
    parse_list,
    random_sample,
    score,
)

FORMATS = ("compact", "natural")


def compact_list(items: list[str]) -> str:
    return "[ " + " , ".join(items) + " ]"


def natural_list(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def grid_text(grid: list[list[str]]) -> str:
    return "[" + ", ".join(" ".join(row) for row in grid) + "]"


def one(task: str, **kw) -> TaskSample:
    kw.setdefault("per_length", 1)
    kw.setdefault("lengths", (5,))
    return make_samples(task, **kw)[0]


# ------------------------------------------------------------------ registry


def test_registries() -> None:
    assert WAITING_LINE_TASKS == (
        "copy", "reverse", "sort", "shuffle", "insert_index", "insert_random",
        "remove_index", "remove_random", "replace_index", "replace_random",
    )
    assert PUZZLE_TASKS == ("latin", "sudoku")
    assert SUITES["all"] == WAITING_LINE_TASKS + PUZZLE_TASKS
    assert SUITES["index"] == (
        "copy", "reverse", "sort", "insert_index", "remove_index", "replace_index"
    )


def test_name_pools() -> None:
    assert len(FIRST_NAMES) == len(set(FIRST_NAMES)) == 92
    assert len(LAST_NAMES) == len(set(LAST_NAMES)) == 192
    assert not set(FIRST_NAMES) & set(LAST_NAMES)
    assert all(w.isascii() and w.isalpha() for w in FIRST_NAMES + LAST_NAMES)


# ------------------------------------------------------------------ generation


def test_reproducible_and_seed_sensitive() -> None:
    for task in ALL_TASKS:
        a = make_samples(task, seed=3, per_length=3)
        assert a == make_samples(task, seed=3, per_length=3)
        assert a != make_samples(task, seed=4, per_length=3)


def test_tasks_with_same_seed_use_different_names() -> None:
    lines = {t: one(t).data["names"] for t in WAITING_LINE_TASKS}
    assert len({tuple(v) for v in lines.values()}) == len(lines)


def test_counts_ids_and_distinct_names() -> None:
    for task in ALL_TASKS:
        samples = make_samples(task)
        assert len(samples) == 100
        assert len({s.id for s in samples}) == 100
        if task in PUZZLE_TASKS:
            continue
        for length in (3, 4, 5, 6):
            group = [s for s in samples if s.id.startswith(f"{task}-l{length}-")]
            assert len(group) == 25
            for s in group:
                names = s.data["names"]
                assert len(names) == length == len(set(names))
                assert all(len(n.split()) == 2 for n in names)
                if "item" in s.data:
                    assert s.data["item"] not in names
    suite = make_suite("all", per_length=2)
    assert len({s.id for s in suite}) == len(suite) == 12 * 8


def test_formats_share_data_and_json() -> None:
    for task in ALL_TASKS:
        c = make_samples(task, per_length=2)
        n = make_samples(task, per_length=2, fmt="natural")
        assert [s.data for s in c] == [s.data for s in n]
        json.dumps([s.data for s in c])


def test_random_sample_is_reproducible_from_rng() -> None:
    for task in ALL_TASKS:
        for fmt in FORMATS:
            a = random_sample(random.Random(7), task, 4, fmt=fmt)
            b = random_sample(random.Random(7), task, 4, fmt=fmt)
            assert a == b and score(a, a.answer) == 1.0
    rng = random.Random(1)
    draws = [random_sample(rng, "reverse", 5).prompt for _ in range(20)]
    assert len(set(draws)) == 20


# ------------------------------------------------------------------ references


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reference_answer_scores_one(fmt: str) -> None:
    for s in make_suite("all", fmt=fmt):
        assert score(s, s.answer) == 1.0, s.id
    # the options only change the index tasks and sort
    for opts in ({"index_base": 1}, {"legacy": True}, {"sort_key": "first"}):
        for s in make_suite("index", fmt=fmt, **opts):
            assert score(s, s.answer) == 1.0, (s.id, opts)


def test_natural_prompt_has_example_and_compact_does_not() -> None:
    for task in ALL_TASKS:
        n = one(task, fmt="natural")
        assert "Example answer:" in n.prompt and "Question:" in n.prompt
        assert "Example" not in one(task).prompt


def test_compact_tokens_in_vocabulary() -> None:
    vocab = compact_vocabulary()
    assert vocab == sorted(set(vocab))
    vset = set(vocab)
    for opts in ({}, {"index_base": 1}, {"legacy": True}, {"sort_key": "first"}):
        suite = "all" if not opts else "index"
        for s in make_suite(suite, lengths=(2, 3, 4, 5, 6, 7, 8), per_length=5, **opts):
            tokens = s.prompt.split() + s.answer.split()
            assert set(tokens) <= vset, set(tokens) - vset


def test_compact_prompt_shapes() -> None:
    s = one("insert_index", lengths=(3,))
    d = s.data
    assert s.prompt == f"insert_index {d['index']} {d['item']} " + compact_list(d["names"])
    s = one("remove_index", lengths=(3,))
    assert s.prompt == f"remove_index {s.data['index']} " + compact_list(s.data["names"])
    s = one("reverse", lengths=(3,))
    assert s.prompt == "reverse " + compact_list(s.data["names"])
    assert s.answer == compact_list(s.data["names"][::-1])


# ------------------------------------------------------------------ options


def test_index_base_shifts_shown_index_only() -> None:
    for task in ("insert_index", "remove_index", "replace_index"):
        zero = make_samples(task, per_length=10)
        onebased = make_samples(task, per_length=10, index_base=1)
        for a, b in zip(zero, onebased):
            assert b.data["index"] == a.data["index"] + 1
            assert a.data["names"] == b.data["names"]
            assert a.answer == b.answer
            names, i = a.data["names"], a.data["index"]
            if task == "remove_index":
                assert a.data["reference"] == names[:i] + names[i + 1 :]
            elif task == "replace_index":
                assert a.data["reference"] == names[:i] + [a.data["item"]] + names[i + 1 :]
            else:
                assert a.data["reference"] == names[:i] + [a.data["item"]] + names[i:]
    # reading a 1-based index as 0-based gives a wrong answer
    for s in make_samples("remove_index", per_length=10, index_base=1):
        names, k = s.data["names"], s.data["index"]
        assert score(s, natural_list(names[: k - 1] + names[k:])) == 1.0
        if k < len(names):
            assert score(s, natural_list(names[:k] + names[k + 1 :])) == 0.0
    nat = one("replace_index", fmt="natural", index_base=1)
    assert f"position {nat.data['index']} (positions count from 1" in nat.prompt


def test_sort_last_vs_legacy_first() -> None:
    last = make_samples("sort", per_length=10)
    legacy = make_samples("sort", per_length=10, legacy=True)
    first = make_samples("sort", per_length=10, sort_key="first")
    assert any(a.answer != b.answer for a, b in zip(last, legacy))
    for a, b, c in zip(last, legacy, first):
        assert a.data["names"] == b.data["names"]
        ref_last = a.data["reference"]
        assert ref_last == sorted(ref_last, key=lambda n: (n.split()[1], n.split()[0]))
        assert b.data["reference"] == sorted(b.data["names"])  # by first name
        assert b.data["sort_key"] == "last" and b.prompt.startswith("sort last [")
        assert b.answer == c.answer and c.prompt.startswith("sort first [")
    nat = one("sort", fmt="natural", legacy=True)
    assert "by last name" in nat.prompt


def test_sort_tie_break_by_first_name() -> None:
    from dllm_decode.evals.tasks.waiting_line import sort_names

    names = ["Zachary Lee", "Adam Lee", "Beth Brown"]
    assert sort_names(names, "last") == ["Beth Brown", "Adam Lee", "Zachary Lee"]
    assert sort_names(["Adam Lee", "Adam Brown"], "first") == ["Adam Brown", "Adam Lee"]


# ------------------------------------------------------------------ random tasks


def test_shuffle_scoring() -> None:
    s = one("shuffle")
    names = s.data["names"]
    assert score(s, natural_list(names)) == 0.0
    assert score(s, natural_list(names[1:] + names[:1])) == 1.0
    assert score(s, natural_list(names[::-1])) == 1.0
    assert score(s, natural_list(names[:-1] + names[:1])) == 0.0  # duplicate, missing one
    assert score(s, natural_list(names[1:])) == 0.0


def test_insert_random_scoring() -> None:
    s = one("insert_random")
    names, item = s.data["names"], s.data["item"]
    for i in range(len(names) + 1):
        assert score(s, natural_list(names[:i] + [item] + names[i:])) == 1.0
    assert score(s, natural_list(names)) == 0.0
    assert score(s, natural_list([item, item] + names)) == 0.0
    swapped = [item] + names[1:] + names[:1]
    assert score(s, natural_list(swapped)) == 0.0
    assert score(s, natural_list(["Noah Smith"] + names)) == (item == "Noah Smith")


def test_remove_random_scoring() -> None:
    s = one("remove_random")
    names = s.data["names"]
    for i in range(len(names)):
        assert score(s, natural_list(names[:i] + names[i + 1 :])) == 1.0
    assert score(s, natural_list(names[2:])) == 0.0  # two removed
    assert score(s, natural_list(names)) == 0.0
    assert score(s, natural_list((names[:-1])[::-1])) == 0.0


def test_replace_random_scoring() -> None:
    s = one("replace_random")
    names, item = s.data["names"], s.data["item"]
    for i in range(len(names)):
        assert score(s, natural_list(names[:i] + [item] + names[i + 1 :])) == 1.0
    assert score(s, natural_list([item, item] + names[2:])) == 0.0  # double edit
    assert score(s, natural_list(names)) == 0.0
    other = "Zachary Young" if item != "Zachary Young" else "Adam Lee"
    assert score(s, natural_list([other] + names[1:])) == 0.0


# ------------------------------------------------------------------ puzzles


def filled(grid: list[list]) -> int:
    return sum(c is not None for row in grid for c in row)


def keeps(grid: list[list[str]], givens: list[list]) -> bool:
    return all(g is None or grid[r][c] == g for r, row in enumerate(givens) for c, g in enumerate(row))


def test_latin_validity() -> None:
    for length in (3, 6, 8):
        for s in make_samples("latin", lengths=(length,), per_length=10):
            sol, givens, syms = s.data["solution"], s.data["givens"], s.data["symbols"]
            assert is_valid_grid(sol, syms, boxes=False) and keeps(sol, givens)
            assert filled(givens) == length - 3
            # any other valid square that respects the givens also scores 1
            swapped = [sol[1], sol[0], sol[2], sol[3]]
            assert score(s, grid_text(swapped)) == float(keeps(swapped, givens))
            bad = [row[:] for row in sol]
            bad[0][0], bad[0][1] = bad[0][1], bad[0][0]
            assert score(s, grid_text(bad)) == 0.0
            assert score(s, grid_text(sol[:3])) == 0.0
            assert score(s, grid_text([row[:3] for row in sol])) == 0.0
    s = one("latin", lengths=(3,))
    assert filled(s.data["givens"]) == 0
    syms = s.data["symbols"]
    relabeled = [[syms[3 - syms.index(x)] for x in row] for row in s.data["solution"]]
    assert score(s, grid_text(relabeled)) == 1.0


def test_sudoku_unique_and_valid() -> None:
    digits = ["1", "2", "3", "4"]
    latin_not_sudoku = [digits, ["2", "1", "4", "3"], ["3", "4", "1", "2"], ["4", "3", "2", "1"]]
    assert not is_valid_grid(latin_not_sudoku, digits, boxes=True)
    for s in make_samples("sudoku", lengths=(3, 4, 5, 6, 8), per_length=8):
        sol, givens = s.data["solution"], s.data["givens"]
        assert is_valid_grid(sol, digits, boxes=True) and keeps(sol, givens)
        assert count_solutions(givens, tuple(digits), boxes=True, limit=5) == 1
        assert 16 - filled(givens) >= 6
        assert score(s, grid_text(latin_not_sudoku)) == 0.0
        assert s.prompt.count("_") == 16 - filled(givens)
    empty = [[None] * 4 for _ in range(4)]
    assert count_solutions(empty, tuple(digits), True, limit=1000) == 288
    assert count_solutions(empty, tuple(digits), False, limit=1000) == 576


# ------------------------------------------------------------------ malformed


MALFORMED = [
    "", " ", "None", "null", "[None]", "[]", "[ ]", "no brackets at all",
    "[", "]", "][", "[Ann Lee, Bob Ray", "Ann Lee, Bob Ray]",
    "\u2603\u0000\ufffd[\u200b]", "[\U0001f600, \u00e9\u00e8]", "[[[[", "]]]]",
    "[a, [b], c]", "[,,,,]", "\x00" * 10, "[" * 1000 + "]" * 1000,
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_malformed_outputs_score_zero(fmt: str) -> None:
    for task in ALL_TASKS:
        s = one(task, fmt=fmt)
        for bad in MALFORMED:
            assert score(s, bad) == 0.0, (task, bad)
        assert score(s, None) == 0.0  # type: ignore[arg-type]
        assert score(s, 12) == 0.0  # type: ignore[arg-type]
        body = s.answer.strip()[1:-1]
        assert score(s, body) == 0.0  # brackets missing
        assert score(s, s.answer[:-1]) == 0.0  # unbalanced
        assert score(s, "[" + body + ", extra]") == 0.0  # extra item
        assert score(s, "[" + body + " extra]") == 0.0  # extra text inside


def test_lenient_parser_accepts_chatter_and_quotes() -> None:
    s = one("reverse")
    ref = s.data["reference"]
    assert score(s, "Sure! Input was [x]. Answer: " + natural_list(ref) + " Hope it helps.") == 1.0
    assert score(s, "[" + ", ".join(f"'{n}'" for n in ref) + "]") == 1.0
    assert score(s, "[" + ",".join(f' "{n}" ' for n in ref) + "]") == 1.0
    assert score(s, natural_list(ref) + " or maybe " + natural_list(ref[::-1])) == 0.0
    assert parse_list("x [ Ann  Lee ,Bob Ray ] y") == ["Ann Lee", "Bob Ray"]
    assert parse_list("[]") == [] and parse_list("nothing") is None
    assert parse_list("[a") is None and parse_list(None) is None  # type: ignore[arg-type]


def test_scores_are_floats_in_zero_one() -> None:
    for s in make_suite("all", per_length=1, lengths=(3,)):
        for out in (s.answer, "", "[x]"):
            v = score(s, out)
            assert isinstance(v, float) and v in (0.0, 1.0)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: make_samples("foo"), "task"),
        (lambda: make_samples("copy", fmt="xml"), "fmt"),
        (lambda: make_samples("sort", sort_key="middle"), "sort_key"),
        (lambda: make_samples("remove_index", index_base=2), "index_base"),
        (lambda: make_samples("remove_index", index_base=True), "index_base"),
        (lambda: make_samples("remove_index", index_base=1.0), "index_base"),
        (lambda: make_samples("copy", per_length=0), "per_length"),
        (lambda: make_samples("copy", lengths=(1,)), "lengths"),
        (lambda: make_samples("copy", lengths=(9,)), "lengths"),
        (lambda: make_samples("copy", lengths=(3, 3)), "lengths"),
        (lambda: make_samples("copy", seed="a"), "seed"),
        (lambda: make_suite("bogus"), "suite"),
        (lambda: random_sample(random.Random(0), "foo", 3), "task"),
        (lambda: random_sample(random.Random(0), "copy", 30), "length"),
        (lambda: score(TaskSample("foo", "x", "", "", {}), "[]"), "task"),
    ],
)
def test_bad_arguments_raise(call, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


def test_error_message_shape() -> None:
    with pytest.raises(ValueError) as err:
        make_samples("foo")
    assert str(err.value) == f"`task` must be one of {list(ALL_TASKS)!r}, got 'foo'"

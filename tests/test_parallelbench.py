"""The ParallelBench loader, chat turns, infill canvas and plain/strict scores, on a small set the tests
write themselves in the published layout (<group>/<task>.jsonl + <group>/task_config.yaml), with
invented names and tasks."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from dllm_decode import Sampler, wrap
from dllm_decode.evals.metrics import summarize
from dllm_decode.evals.parallelbench import (PAPER_AVERAGES, batch_inputs, grade, load_parallelbench, parse_items,
                                             plain_join, render, summary_block)
from dllm_decode.evals.parallelbench.inputs import decoded_tokens
from tests.conftest import tiny_llada_module

NAMES = ["Ada Quill", "Bo Fenn", "Cy Marsh", "Di Vale", "Eb Stone"]
LINE = 'Queue desk.\\nPeople: {context}\\nAnswer with the list.'  # a literal backslash-n, as in the YAML files
INSERT = 'Queue desk.\\nAdd "{word}" anywhere: {context}'
SUDOKU = "Fill the zeros:\\n{sudoku}\\nOutput:\\n"
LATIN = "Square of size {size} with {symbols}."


def lst(names: list[str]) -> str:
    return "[" + ", ".join(f'"{n}"' for n in names) + "]"


def fmt(n: int) -> str:
    return lst(["[MASK]"] * n)


def line_record(names: list[str], answer, example_names: list[str], example_answer, **extra) -> dict:
    example = {"input": {"context": lst(example_names), **extra.get("example_input", {})}, "answer": example_answer,
               "output_format": fmt(len(example_names)), "metadata": {"length": len(example_names)}}
    return {"input": {"context": lst(names), **extra.get("input", {}), "icl_examples": [example]},
            "answer": answer, "output_format": extra.get("output_format", fmt(len(names))),
            "metadata": {"length": len(names)}}


def write_group(root: Path, group: str, configs: dict, tasks: dict[str, list[dict]]) -> None:
    (root / group).mkdir(parents=True, exist_ok=True)
    (root / group / "task_config.yaml").write_text(yaml.safe_dump(configs))
    for task, records in tasks.items():
        (root / group / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pbench")
    copy = [line_record(NAMES[:2], lst(NAMES[:2]), NAMES[2:5], lst(NAMES[2:5])),
            line_record(NAMES[1:4], lst(NAMES[1:4]), NAMES[:2], lst(NAMES[:2]))]
    swap = [line_record(NAMES[:3], {"input": NAMES[:3], "example": lst(NAMES[2::-1])}, NAMES[3:],
                        {"input": NAMES[3:], "example": lst(NAMES[:2:-1])})]
    add = [line_record(NAMES[:2], {"input": NAMES[:2], "word": "Eb Stone"}, NAMES[2:4],
                       {"input": NAMES[2:4], "word": "Ada Quill", "example": lst(["Ada Quill", *NAMES[2:4]])},
                       input={"word": "Eb Stone"}, example_input={"word": "Ada Quill"}, output_format=fmt(3))]
    write_group(root, "queue", {
        "queue/mirror": {"prompt": LINE, "metric": "list_match_score"},
        "queue/swap": {"prompt": LINE, "metric": "list_shuffle_score"},
        "queue/add": {"prompt": INSERT, "metric": "list_random_insert_score"},
        "queue/essay": {"prompt": "Write about {context}.", "metric": "sentence_to_words_score"},
    }, {"mirror": copy, "swap": swap, "add": add, "essay": [{"input": {"context": "x"}, "answer": {"words": []}}]})
    sudoku = {"input": {"sudoku": "1200\n3412\n2143\n4321",
                        "icl_examples": [{"input": {"sudoku": "0234\n3412\n2143\n4321"},
                                          "answer": "1234\n3412\n2143\n4321"}]},
              "answer": "1234\n3412\n2143\n4321", "metadata": {"length": 14}}
    latin = {"input": {"size": 2, "symbols": "[P, Q]", "icl_examples": []},
             "answer": {"symbols": ["P", "Q"], "example": "P,Q\nQ,P"}, "metadata": {"length": 2}}
    write_group(root, "grid", {"grid/mini_sudoku": {"prompt": SUDOKU, "metric": "sudoku_score"},
                               "grid/mini_latin": {"prompt": LATIN, "metric": "latin_square_score"}},
                {"mini_sudoku": [sudoku], "mini_latin": [latin]})
    return root


@pytest.fixture(scope="module")
def suite(bench_dir, tmp_path_factory):
    with pytest.warns(UserWarning, match="skipping queue/essay: its metric 'sentence_to_words_score'"):
        return load_parallelbench(bench_dir, cache_dir=str(tmp_path_factory.mktemp("hf-cache")))


def by_task(suite, task):
    return [s for s in suite.samples if s.task == task]


def test_loader_lists_tasks_and_skips_unknown_metrics(suite):
    assert suite.tasks == ["grid/mini_latin", "grid/mini_sudoku", "queue/add", "queue/mirror", "queue/swap"]
    assert suite.skipped == {"queue/essay": "sentence_to_words_score"}
    assert [s.id for s in by_task(suite, "queue/mirror")] == ["queue/mirror:1", "queue/mirror:2"]


def test_messages_follow_the_authors_construction(suite):
    """ICL user turn (template over the example input, backslash-n -> newline), assistant turn (answer
    string or its `example`), then the sample's user turn."""
    first = by_task(suite, "queue/mirror")[0]
    assert first.messages == (
        {"role": "user", "content": f"Queue desk.\nPeople: {lst(NAMES[2:5])}\nAnswer with the list."},
        {"role": "assistant", "content": lst(NAMES[2:5])},
        {"role": "user", "content": f"Queue desk.\nPeople: {lst(NAMES[:2])}\nAnswer with the list."})
    add = by_task(suite, "queue/add")[0]
    assert add.messages[1] == {"role": "assistant", "content": lst(["Ada Quill", *NAMES[2:4]])}  # the `example`
    assert add.messages[2]["content"] == f'Queue desk.\nAdd "Eb Stone" anywhere: {lst(NAMES[:2])}'
    swap = by_task(suite, "queue/swap")[0]
    assert swap.messages[1]["content"] == lst(NAMES[:2:-1])
    sudoku = by_task(suite, "grid/mini_sudoku")[0]
    assert [m["content"] for m in sudoku.messages] == [
        "Fill the zeros:\n0234\n3412\n2143\n4321\nOutput:\n", "1234\n3412\n2143\n4321",
        "Fill the zeros:\n1200\n3412\n2143\n4321\nOutput:\n"]
    latin = by_task(suite, "grid/mini_latin")[0]
    assert latin.messages == ({"role": "user", "content": "Square of size 2 with [P, Q]."},)
    assert first.prompt == plain_join(first.messages)
    assert plain_join(latin.messages) == "user: Square of size 2 with [P, Q].\n\nassistant:"


@pytest.mark.parametrize("text, plain, strict", [
    ('["Ada Quill", "Bo Fenn"]', 1.0, 1.0),
    ('Sure: ["x"] then ["Ada Quill", "Bo Fenn"] done', 1.0, 1.0),  # the last [...] counts
    ("[Ada Quill, Bo Fenn]", 1.0, 0.0),  # unquoted items: plain only
    ('["Ada Quill","Bo Fenn"]', 1.0, 0.0),  # strict needs exactly `", "` between items
    ('"Ada Quill", "Bo Fenn"', 1.0, 0.0),  # no brackets: plain reads the whole text
    ('["Ada Quill", "Bo Fenn"', 1.0, 0.0),  # no closing bracket
    ("['Ada Quill', 'Bo Fenn']", 0.0, 0.0),  # single quotes are not stripped
    ('["Ada Quill", "Bo Fenn", ]', 1.0, 0.0),  # plain drops empty items
    ('["Bo Fenn", "Ada Quill"]', 0.0, 0.0),
])
def test_list_match_plain_and_strict(suite, text, plain, strict):
    sample = by_task(suite, "queue/mirror")[0]
    assert grade(sample.metric, sample.data, text) == {"score": plain, "score_strict": strict}


def test_strict_parse_rules():
    assert parse_items('["A", "B"]', strict=True) == ["A", "B"]
    assert parse_items('["A", "B""]', strict=True) is None  # a quote inside an item
    assert parse_items('[" A", "B"]', strict=True) == [" A", "B"]  # strict keeps inner spaces
    assert parse_items('[" A", "B"]', strict=False) == ["A", "B"]
    assert parse_items("[]", strict=True) is None
    assert parse_items("[]", strict=False) == []


def test_random_edit_metrics(suite):
    swap = by_task(suite, "queue/swap")[0]
    assert grade(swap.metric, swap.data, lst(NAMES[2::-1]))["score"] == 1.0
    assert grade(swap.metric, swap.data, lst(NAMES[:3]))["score"] == 0.0  # unchanged order is not a shuffle
    add = by_task(suite, "queue/add")[0]
    assert grade(add.metric, add.data, lst(["Ada Quill", "Eb Stone", "Bo Fenn"])) == {"score": 1.0,
                                                                                      "score_strict": 1.0}
    assert grade(add.metric, add.data, lst(["Ada Quill", "Cy Marsh", "Bo Fenn"]))["score"] == 0.0


def test_puzzle_metrics(suite):
    sudoku = by_task(suite, "grid/mini_sudoku")[0]
    assert grade(sudoku.metric, sudoku.data, "1234\n3412\n2143\n4321") == {"score": 1.0, "score_strict": 1.0}
    assert grade(sudoku.metric, sudoku.data, "1 2 3 4\n3,4,1,2\n\n2143\n4321\n") == {"score": 1.0,
                                                                                   "score_strict": 0.0}
    assert grade(sudoku.metric, sudoku.data, "1234\n3412\n2143\n4312")["score"] == 0.0
    latin = by_task(suite, "grid/mini_latin")[0]
    assert grade(latin.metric, latin.data, "Here:\nQ, P\nP,Q") == {"score": 1.0, "score_strict": 1.0}
    assert grade(latin.metric, latin.data, "P,Q\nP,Q")["score"] == 0.0


def records_for(config_id: str, tps_nfe: int, scores: dict[str, list[tuple[float, float]]]) -> list[dict]:
    return [{"config_id": config_id, "label": config_id, "sampler": "confidence", "options": {"k": 1},
             "config": {"steps": 8}, "task": task, "id": f"{task}:{i}", "score": plain, "score_strict": strict,
             "nfe": tps_nfe, "gen_tokens": 8, "canvas_length": 8, "wall_time": 1.0}
            for task, rows in scores.items() for i, (plain, strict) in enumerate(rows)]


def test_scores_per_task_and_average_x100():
    records = records_for("k1", 8, {"a/one": [(1.0, 1.0), (1.0, 0.0)], "a/two": [(0.0, 0.0), (1.0, 1.0),
                                                                                  (1.0, 1.0), (1.0, 0.0)]})
    block = summary_block(summarize(records)["configs"], {"a/three": "grammar_score"})
    scores = block["scores"]["k1"]
    assert scores["per_task"]["a/one"] == {"score": 100.0, "score_strict": 50.0, "n": 2}
    assert scores["per_task"]["a/two"] == {"score": 75.0, "score_strict": 50.0, "n": 4}
    assert scores["score"] == pytest.approx(87.5) and scores["score_strict"] == pytest.approx(50.0)  # mean of tasks
    assert block["pbx"]["PB80"] == pytest.approx(1.0) and block["pbx"]["PB90"] is None
    assert block["skipped_tasks"] == {"a/three": "grammar_score"}
    assert block["paper_averages"]["LLaDA-1.5"] == {"k=1": 86.4, "k=2": 74.4, "k=4": 58.9, "k=8": 41.1}
    assert PAPER_AVERAGES["Dream-7B"] == {1: 86.6, 2: 80.4, 4: 60.2, 8: 44.6}


def bad_dir(tmp_path: Path, lines: list[str], prompt: str = LINE) -> Path:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "task_config.yaml").write_text(yaml.safe_dump({"q/t": {"prompt": prompt,
                                                                              "metric": "list_match_score"}}))
    (tmp_path / "q" / "t.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


GOOD = json.dumps({"input": {"context": lst(NAMES[:2])}, "answer": lst(NAMES[:2])})


@pytest.mark.parametrize("line, match", [
    ('{"input": {"context": "[]"}, "answer": ', r"t\.jsonl:3: each line must be one JSON record"),
    ('{"input": {"context": "[]"}}', r"t\.jsonl:3: a record must have the fields \['input', 'answer'\], "
                                     r"missing \['answer'\]"),
    ('{"input": {"ctx": "[]"}, "answer": "[]"}', r"t\.jsonl:3: `input` must hold every field of the task's "
                                                r"prompt template, missing 'context'"),
    ('{"input": {"context": "[]"}, "answer": {"x": 1}}', r"t\.jsonl:3: `answer` must be the reference list"),
])
def test_bad_record_names_file_and_line(tmp_path, line, match):
    root = bad_dir(tmp_path, [GOOD, "", line])
    with pytest.raises(ValueError, match=match):
        load_parallelbench(root, cache_dir=str(tmp_path / "cache"))


def test_bad_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="`parallelbench` path must be a directory"):
        load_parallelbench(tmp_path / "missing")
    with pytest.raises(ValueError, match="must hold <group>/<task>.jsonl files"):
        load_parallelbench(tmp_path)
    root = bad_dir(tmp_path, [GOOD])
    (root / "q" / "task_config.yaml").write_text(yaml.safe_dump({"q/other": {"prompt": "x", "metric": "m"}}))
    with pytest.raises(ValueError, match=r"must give `q/t` a `prompt` template and a `metric`"):
        load_parallelbench(root)


# -- a tiny model with a punctuation-aware word tokenizer and a chat template --------------------------------

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
            "{% if add_generation_prompt %}<assistant> {% endif %}")


def bench_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    words = ["<pad>", "<eos>", "<mask>", "<unk>", "<user>", "<assistant>", "[", "]", '"', ",", ":", ".", "\\",
             *{w for n in NAMES for w in n.split()}, "Queue", "desk", "People", "Answer", "with", "the", "list",
             "Add", "anywhere", "user", "assistant"]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", mask_token="<mask>",
                                  unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": ["<user>", "<assistant>"]})
    tok.chat_template = TEMPLATE if chat else None
    return tok


@pytest.fixture(scope="module")
def chat_model():
    tok = bench_tokenizer(chat=True)
    module = tiny_llada_module(vocab_size=len(tok), embedding_size=len(tok), mask_token_id=tok.mask_token_id,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return wrap(module, mask_id=tok.mask_token_id, eos_ids=(tok.eos_token_id,), pad_id=tok.pad_token_id,
                tokenizer=tok)


def test_render_through_chat_template_or_plain_join(suite, chat_model):
    sample = by_task(suite, "queue/mirror")[0]
    expected = "".join(f"<{m['role']}> {m['content']} " for m in sample.messages) + "<assistant> "
    assert render(chat_model, sample) == expected
    assert render(chat_model, sample, chat_template=False) == plain_join(sample.messages)


def test_infill_decodes_only_the_mask_slots(suite, chat_model):
    samples = by_task(suite, "queue/mirror") + by_task(suite, "grid/mini_sudoku")
    tok, G = chat_model.tokenizer, 24
    prompts, canvas = batch_inputs(chat_model, samples, G, infill=True, slot_tokens=2)
    given = tok('["<mask><mask>", "<mask><mask>"]', add_special_tokens=False).input_ids
    assert canvas[0].tolist() == given + [chat_model.pad_id] * (G - len(given))
    assert (canvas[2] == chat_model.mask_id).all()  # no output_format (a puzzle): an all-mask canvas
    result = Sampler("confidence", gen_length=G, steps=G, block_length=8).generate(chat_model, prompts,
                                                                                    canvas=canvas)
    keep = canvas != chat_model.mask_id
    assert torch.equal(result.canvas[keep], canvas[keep])
    assert not (result.canvas == chat_model.mask_id).any()
    assert (result.canvas[:2][~keep[:2]] != canvas[:2][~keep[:2]]).all()
    # generated tokens: the decoded slots before the first EOS, never the given quotes and commas
    assert decoded_tokens(canvas, [G, 3, G], chat_model.mask_id) == [4, 1, G]  # masks at 2, 3, 7, 8 (, 12, 13)
    assert decoded_tokens(canvas, [7, 9, 5], chat_model.mask_id) == [2, 4, 5]
    with pytest.raises(ValueError, match=r"`gen_length` must hold the infill canvas of .*mirror\.jsonl:1"):
        batch_inputs(chat_model, samples[:1], 6, infill=True)


def test_generate_canvas_shape_error(chat_model):
    with pytest.raises(ValueError, match=r"`canvas` must be an integer LongTensor of shape \[batch, gen_length\]"):
        Sampler("confidence", gen_length=8, steps=8).generate(chat_model, [[4, 5]], canvas=torch.zeros(1, 5).long())


def shuffle_line(answer) -> str:
    return json.dumps({"input": {"context": lst(NAMES[:2])}, "answer": answer})


@pytest.mark.parametrize("metric, line, match", [
    ("list_match_score", "[1, 2]", r"t\.jsonl:1: a record must be a JSON object, got list"),
    ("list_match_score", '{"input": "x", "answer": "[]"}', r"t\.jsonl:1: `input` must be a JSON object"),
    ("list_match_score", json.dumps({"input": {"context": "[]", "icl_examples": [{"input": {"context": "[]"},
                                                                                   "answer": {"no": 1}}]},
                                     "answer": "[]"}),
     r"t\.jsonl:1 \(icl_examples\[0\]\): `answer` must be a string or a dict with an `example` string"),
    ("list_shuffle_score", shuffle_line("[]"), r"t\.jsonl:1: `answer` must be a dict with \['input'\]"),
    ("list_random_insert_score", shuffle_line({"input": NAMES[:2], "word": "Bo Fenn", "n_words": 2}),
     r"t\.jsonl:1: `answer.n_words` must be 1"),
    ("latin_square_score", shuffle_line({"symbols": "PQ"}), r"t\.jsonl:1: `answer` must be a dict with a `symbols`"),
    ("sudoku_score", shuffle_line("12\n34"), r"t\.jsonl:1: `answer` must be a 4x4 solution"),
])
def test_bad_answer_names_file_and_line(tmp_path, metric, line, match):
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "task_config.yaml").write_text(yaml.safe_dump({"q/t": {"prompt": LINE, "metric": metric}}))
    (tmp_path / "q" / "t.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=match):
        load_parallelbench(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_file_level_errors(tmp_path):
    root = bad_dir(tmp_path, [""])
    with pytest.raises(ValueError, match=r"t\.jsonl` must hold at least one record, got an empty file"):
        load_parallelbench(root)
    # `metadata` a string, then after a blank line an object: a mix the `datasets` JSON reader rejects
    mixed = [json.dumps({"input": {"context": "[]"}, "answer": "[]", "metadata": meta}) for meta in ("s", {"a": 1})]
    (root / "q" / "t.jsonl").write_text("\n\n".join(mixed) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl: the records must share one schema to load with `datasets`"):
        load_parallelbench(root, cache_dir=str(tmp_path / "cache"))
    (root / "q" / "task_config.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match=r"task_config\.yaml must map `<group>/<task>` to a task config, got list"):
        load_parallelbench(root)
    with pytest.raises(ValueError, match=r"`metric` must be one of \['list_match_score'"):
        grade("grammar_score", {}, "text")


def test_input_errors(suite, chat_model):
    sample = by_task(suite, "queue/mirror")[0]
    bare = wrap(chat_model.module, mask_id=chat_model.mask_id, eos_ids=chat_model.eos_ids)
    with pytest.raises(ValueError, match="`model` must have a tokenizer to render ParallelBench's chat turns"):
        render(bare, sample)
    plain = wrap(chat_model.module, mask_id=chat_model.mask_id, eos_ids=chat_model.eos_ids,
                 tokenizer=bench_tokenizer(chat=False))
    assert render(plain, sample) == plain_join(sample.messages)
    with pytest.raises(ValueError, match="`chat_template=True` but the tokenizer of .* has no chat template"):
        render(plain, sample, chat_template=True)
    broken = dataclasses.replace(sample, output_format='["[MASK]", "<mask>"]')
    with pytest.raises(ValueError, match=r"mirror\.jsonl:1: `output_format` must tokenize to 1 mask token\(s\) per"):
        batch_inputs(chat_model, [broken], 24, infill=True)


def test_settings_and_cli_errors(bench_dir, capsys):
    from dllm_decode.cli import main
    from dllm_decode.evals.runner import EvalSettings

    with pytest.raises(ValueError, match=r"`suite` must be one of .* or parallelbench:PATH"):
        EvalSettings(suite="nope")
    with pytest.raises(ValueError, match="`infill` needs a ParallelBench suite"):
        EvalSettings(infill=True)
    with pytest.raises(ValueError, match="`slot_tokens` only applies with `infill=True`"):
        EvalSettings(suite=f"parallelbench:{bench_dir}", slot_tokens=2)
    with pytest.raises(SystemExit):
        main(["eval", "--model", "x", "--samplers", "confidence:k=1", "--suite", "bogus"])
    assert main(["eval", "--model", "x", "--samplers", "confidence:k=1", "--suite", f"parallelbench:{bench_dir}",
                 "--per-length", "3"]) == 2  # a user error: one line on stderr, before any weights load
    assert "`--per-length` sizes the procedural suites; parallelbench:PATH runs every record" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--lengths", ["3", "4"], "`--lengths` picks the list lengths of the procedural suites; .* got --lengths 3 4;"),
    ("--seed", ["7"], "`--seed` draws the procedural suites; parallelbench:PATH runs every record .* got --seed 7;"),
    ("--fmt", ["natural"], "`--fmt` words the prompts of the procedural suites; .* got --fmt natural;"),
])
def test_procedural_flags_are_refused_for_parallelbench(bench_dir, capsys, flag, value, message):
    """The published files fix their samples and prompts: a flag given for them would be silently ignored."""
    from dllm_decode.cli import _eval_plan, build_parser, main

    base = ["eval", "--model", "x", "--samplers", "confidence:k=1", "--suite", f"parallelbench:{bench_dir}"]
    assert main(base + [flag, *value]) == 2  # one line on stderr, before any weights load
    assert re.search(message, capsys.readouterr().err)
    _, settings, _ = _eval_plan(build_parser().parse_args(base))  # unset: the defaults, and no error
    assert (settings.seed, settings.lengths, settings.fmt) == (1234, (3, 4, 5, 6), "compact")


def test_eval_report_end_to_end(bench_dir, chat_model, tmp_path, monkeypatch):
    """run_eval on the written set in infill mode: records carry both scores and the exact prompt text;
    summary.json and the report carry the x100 scores and the paper's reference lines."""
    pytest.importorskip("matplotlib")
    from dllm_decode.cli import _eval_plan, build_parser
    from dllm_decode.evals import parse_grid, run_eval, write_report

    args = build_parser().parse_args(["eval", "--model", "m", "--samplers", "confidence:k=1,4", "--suite",
                                      f"parallelbench:{bench_dir}", "--infill", "--gen-length", "24"])
    specs, settings, _ = _eval_plan(args)
    assert settings.infill and settings.suite == f"parallelbench:{bench_dir}"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="skipping queue/essay"):
        configs = run_eval(chat_model, parse_grid(["confidence:k=1,4"]), settings, tmp_path / "run", progress=False)
    assert len(configs) == 2 and all("score_strict" in c for c in configs)
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    rows = [r for r in records if r["type"] == "record"]
    assert len(rows) == 2 * 6
    row = next(r for r in rows if r["id"] == "queue/mirror:1")
    with pytest.warns(UserWarning, match="skipping queue/essay"):
        suite = load_parallelbench(bench_dir, cache_dir=str(tmp_path / "cache"))
    sample = by_task(suite, "queue/mirror")[0]
    assert row["prompt_text"] == render(chat_model, sample)
    assert {row["score"], row["score_strict"]} <= {0.0, 1.0}
    assert row["gen_tokens"] <= 2 and row["canvas_length"] == 24  # two one-token slots decoded, not the quotes
    packed = row["output"].replace(" ", "")  # the word-level tokenizer decodes with spaces between tokens
    assert packed.startswith('["') and packed.endswith('"]') and packed.count('","') == 1  # the given format
    assert grade(sample.metric, sample.data, row["output"]) == {"score": row["score"],
                                                                "score_strict": row["score_strict"]}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    bench = summary["parallelbench"]
    assert bench["skipped_tasks"] == {"queue/essay": "sentence_to_words_score"}
    first = bench["scores"][configs[0]["label"]]
    assert first["score"] == pytest.approx(100 * configs[0]["score"])
    assert set(first["per_task"]) == {"grid/mini_latin", "grid/mini_sudoku", "queue/add", "queue/mirror",
                                      "queue/swap"}
    written = write_report(tmp_path / "run")
    assert written["parallelbench"].is_file()
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## ParallelBench (scores x100, plain / strict)" in report and "LLaDA-1.5 k=1 86.4" in report


@pytest.mark.parametrize("name, options", [("confidence", {"steps": 16, "block_length": 4}),
                                           ("threshold", {"cache": "dual", "block_length": 4}),
                                           ("ssd", {})])
def test_generate_from_a_canvas_changes_only_masks(llada, name, options):
    """The `canvas` hook under a step budget, a KV cache and the self-speculative loop: given tokens stay,
    every mask is decoded, and a batch equals its rows decoded one at a time."""
    from tests.conftest import MASK

    canvas = torch.randint(0, 90, (2, 16), generator=torch.Generator().manual_seed(3))
    canvas[0, [2, 3, 9]] = MASK
    canvas[1, [0, 15]] = MASK
    prompts = [torch.arange(1, 6), torch.arange(3, 10)]
    sampler = Sampler(name, gen_length=16, **options)
    result = sampler.generate(llada, prompts, canvas=canvas)
    keep = canvas != MASK
    assert torch.equal(result.canvas[keep], canvas[keep]) and not (result.canvas == MASK).any()
    for row in range(2):
        alone = sampler.generate(llada, prompts[row:row + 1], canvas=canvas[row:row + 1])
        assert torch.equal(alone.canvas[0], result.canvas[row])

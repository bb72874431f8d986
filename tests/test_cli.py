"""`dllm-decode` in-process: generate, samplers, eval (table on stdout), report, and error messages."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from dllm_decode import Sampler, available_samplers
from dllm_decode.cli import main
from tests.evals_helpers import subprocess_env, tiny_model_dir  # noqa: F401


def test_generate_prints_text_and_accounting(tiny_model_dir, capsys):
    args = ["generate", "--model", str(tiny_model_dir), "--sampler", "confidence", "-o", "gen_length=16",
            "-o", "steps=8", "--threads", "1"]
    assert main([*args, "copy [ Gemma Murray ]", "reverse [ Gemma Murray , Gavin Turner ]"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[0] ") and "\n[1] " in out and "nfe=8" in out and "tokens_per_forward=2.0" in out
    assert main([*args, "--json", "copy [ Gemma Murray ]"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["nfe"] == 8 and data["config"]["steps"] == 8 and len(data["text"]) == 1


def test_generate_rejects_a_bad_option_with_the_library_message(tiny_model_dir, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--sampler", "threshold", "-o", "steps=4", "x"]) == 2
    assert "`steps` is not used by 'threshold'" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_model_dir), "-o", "threshold", "x"]) == 2
    assert "must look like `key=value`" in capsys.readouterr().err


def test_samplers_lists_every_name_with_a_description_and_its_paper(capsys):
    from dllm_decode.samplers.registry import ALIASES, PRESETS

    assert main(["samplers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    named = [line.split(":")[0] for line in lines if line and not line.startswith((" ", "`"))]
    assert named == available_samplers()
    assert "threshold: Fast-dLLM: commit every position with p >= threshold (0.9)" in lines
    assert "fastdllm: alias of threshold" in lines
    papers = [line for line in lines if line.startswith("    paper: ")]
    assert len(papers) == len(PRESETS) and all(PRESETS[n].paper for n in PRESETS)
    assert all(PRESETS[n].summary for n in PRESETS) and set(ALIASES) <= set(named)


@pytest.mark.parametrize("name", ["creditdecoding", "prophet", "s2d2", "adablock", "deer"])
def test_samplers_name_lists_every_option_with_meaning_and_default(name, capsys):
    from dllm_decode.option_docs import describe

    assert main(["samplers", name]) == 0
    out = capsys.readouterr().out
    rows, needs = describe(name)
    options = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and " = " in line]
    assert options == [option for option, *_ in rows]
    if needs is None:  # the composition builds: its resolved config is exactly what is listed
        assert set(options) == set(Sampler(name).config) - {"sampler"}
    else:
        assert "needs options: `drafter` is required" in out
    for option, default, meaning, _ in rows:
        assert meaning and f"  {option}" in out and repr(default) in out


def test_samplers_with_an_unknown_name_is_a_one_line_error(capsys):
    assert main(["samplers", "thresold"]) == 2
    err = capsys.readouterr().err
    assert "`name` must be one of" in err and "'thresold'" in err and len(err.strip().splitlines()) == 1


def test_eval_prints_a_table_and_report_writes_files(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["eval", "--model", str(tiny_model_dir), "--preset", "quick", "--suite", "index", "--per-length", "1",
            "--lengths", "3", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    table = capsys.readouterr().out
    for label in ("confidence k=1", "confidence k=2", "confidence k=4", "threshold threshold=0.7",
                  "threshold threshold=0.9", "factor factor=1.0"):
        assert f"| {label} |" in table
    assert "| configuration | score | NFE | tokens/forward |" in table
    assert "per task:\n| configuration | copy | reverse | sort |" in table  # the per-task table follows
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["configs"][0]
    assert {"sampler", "options", "score", "nfe", "tokens_per_forward", "tokens_per_step", "wall_time",
            "per_task"} <= set(entry)
    assert main(["report", str(out), "--no-plots"]) == 0
    assert "| confidence k=4 |" in capsys.readouterr().out and (out / "report.md").is_file()


@pytest.mark.parametrize("extra,message", [
    ([], "`eval` needs `--preset` or `--samplers`"),
    (["--samplers", "confidence:k=5"], "`k` must be a positive int dividing `gen_length` (32), got 5"),
    (["--samplers", "threshold:thresh=0.9"], "unknown option(s) ['thresh']"),
])
def test_eval_errors_before_loading_anything(extra, message, tmp_path, capsys):
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "r"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_the_cli_module_and_help_import_neither_torch_nor_transformers():
    code = ("import sys, contextlib, io\nimport dllm_decode.cli as cli\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    cli.main(['generate', '--help'])\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_samplers_in_a_fresh_process_lists_the_speculative_presets():
    proc = subprocess.run([sys.executable, "-m", "dllm_decode.cli", "samplers"], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    names = {line.split(":")[0] for line in proc.stdout.splitlines()}
    assert {"ssd", "freedave", "s2d2", "deer"} <= names


GEN = ["generate", "--sampler", "confidence", "-o", "gen_length=16", "-o", "steps=8", "--threads", "1", "--json"]


def _generate(tiny_model_dir, capsys, *args: str) -> dict:
    assert main([*GEN, "--model", str(tiny_model_dir), *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_prompts_from_stdin_and_files_equal_prompts_as_arguments(tiny_model_dir, tmp_path, capsys, monkeypatch):
    texts = ["copy [ Gemma Murray ]", "reverse [ Gemma Murray , Gavin Turner ]"]
    direct = _generate(tiny_model_dir, capsys, *texts)
    monkeypatch.setattr(sys, "stdin", io.StringIO(texts[0] + "\n\n" + texts[1] + "\n"))
    assert _generate(tiny_model_dir, capsys, "-")["ids"] == direct["ids"]
    lines = tmp_path / "prompts.txt"
    lines.write_text("\n".join(texts) + "\n")
    assert _generate(tiny_model_dir, capsys, "--prompts", str(lines))["ids"] == direct["ids"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(texts[1] + "\n"))
    mixed = _generate(tiny_model_dir, capsys, texts[0], "-")  # arguments first, then stdin, in order
    assert mixed["ids"] == direct["ids"]


def test_jsonl_token_id_prompts_equal_their_text(tiny_model_dir, tmp_path, capsys):
    from dllm_decode.models import load_model

    texts = ["copy [ Gemma Murray ]", "reverse [ Gemma Murray , Gavin Turner ]"]
    tok = load_model(tiny_model_dir).tokenizer
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text(json.dumps({"input_ids": ids[0]}) + "\n" + json.dumps({"prompt": texts[1]}) + "\n")
    direct = _generate(tiny_model_dir, capsys, *texts)
    assert _generate(tiny_model_dir, capsys, "--prompts", str(jsonl))["ids"] == direct["ids"]
    only_ids = tmp_path / "ids.jsonl"  # what a checkpoint without a tokenizer needs
    only_ids.write_text("".join(json.dumps({"input_ids": i}) + "\n" for i in ids))
    assert _generate(tiny_model_dir, capsys, "--prompts", str(only_ids))["ids"] == direct["ids"]


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "copy [ Gemma ]"}\nnot json\n', "line 2: a JSONL prompt must be one JSON object per line"),
    ('{"text": "copy"}\n', "must have exactly one of `prompt` or `input_ids`"),
    ('{"input_ids": [1, -2]}\n', "`input_ids` must be a non-empty list of token ids (ints >= 0), got [1, -2]"),
    ('{"prompt": ""}\n', "`prompt` must be a non-empty string"),
    ("\n\n", "`generate` needs at least one prompt, got none"),
])
def test_bad_prompt_files_are_one_line_errors(content, message, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    assert main(["generate", "--model", str(tiny_model_dir), "--prompts", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_missing_prompts_file_is_named(tiny_model_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--prompts", str(tmp_path / "nope.txt")]) == 2
    assert "`--prompts` must name a file of prompts, got" in capsys.readouterr().err


def test_trace_prints_each_step_and_draws_the_order(tiny_model_dir, tmp_path, capsys):
    args = ["generate", "--model", str(tiny_model_dir), "--sampler", "confidence", "-o", "gen_length=16",
            "-o", "steps=8", "--threads", "1", "--trace", "copy [ Gemma Murray ]"]
    assert main([*args, "--trace-out", str(tmp_path / "order.html")]) == 0
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("  step ")]
    assert len(steps) == 8 and all("+2 " in line for line in steps)  # k = 2 tokens per step, every step
    html = (tmp_path / "order.html").read_text()
    assert html.count("<td class='new'>") == 16  # each position is new at exactly one step
    pytest.importorskip("matplotlib")
    assert main([*args, "--trace-out", str(tmp_path / "order.png")]) == 0
    assert (tmp_path / "order.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_out_needs_a_known_picture_format(tiny_model_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tiny_model_dir), "--trace-out", str(tmp_path / "o.svg"), "x"]) == 2
    assert "`--trace-out` must end in .png or .html, got" in capsys.readouterr().err


def test_threads_default_to_one_on_cpu_and_reject_negatives(tiny_model_dir, capsys, monkeypatch):
    import torch

    from dllm_decode.cli import set_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        set_threads(None, "cpu")
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        set_threads(0, "cpu")  # 0 leaves torch's choice alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert main(["generate", "--model", str(tiny_model_dir), "--threads", "-1", "x"]) == 2
    assert "`--threads` must be >= 0 (0: torch's choice), got -1" in capsys.readouterr().err

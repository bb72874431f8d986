"""`dllm-decode` in-process: generate, samplers, eval (table on stdout), report, and error messages."""
from __future__ import annotations

import json

import pytest

from dllm_decode import available_samplers
from dllm_decode.cli import main
from tests.evals_helpers import tiny_model_dir  # noqa: F401


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


def test_samplers_lists_every_registered_name_with_defaults(capsys):
    assert main(["samplers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].split(" ")[0] for line in lines] == available_samplers()
    assert any(line.startswith("threshold: ") and "threshold=0.9" in line for line in lines)
    assert all(": needs options: " in line or "gen_length=" in line for line in lines)


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

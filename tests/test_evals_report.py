"""Reports: Markdown tables and PNG plots from a run directory; a clear error without matplotlib."""
from __future__ import annotations

import sys

import pytest

from dllm_decode.evals import EvalSettings, parse_grid, run_eval, write_report
from tests.evals_helpers import tiny_model, tiny_model_dir  # noqa: F401


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_eval(tiny_model, parse_grid(["confidence:k=2,4", "threshold:threshold=0.5,0.9"]),
             EvalSettings(suite="index", per_length=1, lengths=(3,), batch_size=8), out, progress=False)
    return out


def test_report_writes_markdown_and_pngs(run_dir):
    pytest.importorskip("matplotlib")
    written = write_report(run_dir)
    text = written["markdown"].read_text()
    assert "| confidence k=2 |" in text and "| threshold threshold=0.9 |" in text
    assert "| policy | PB90 | PB80 | PB70 | PB60 |" in text
    assert "| configuration | copy | reverse | sort | insert_index | remove_index | replace_index |" in text
    for kind in ("frontier", "per_task"):
        assert written[kind].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_matplotlib_is_a_clear_error_and_keeps_the_table(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    (run_dir / "report.md").unlink(missing_ok=True)
    with pytest.raises(ImportError, match=r"pip install 'dllm-decode\[plot\]'"):
        write_report(run_dir)
    assert "| confidence k=4 |" in (run_dir / "report.md").read_text()


def test_report_of_an_empty_directory_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="`run_dir` must hold a records.jsonl"):
        write_report(tmp_path)

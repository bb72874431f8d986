"""Reports: Markdown tables and PNG plots from a run directory; a clear error without matplotlib."""
from __future__ import annotations

import re
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
    assert "A cell is \"-\" when no configuration of that policy reached that score" in text
    assert "![per-task frontier](task_frontier.png)" in text
    for kind in ("frontier", "task_frontier", "per_task"):
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


@pytest.fixture
def captured_figures(monkeypatch):
    """Figures the report draws, kept open for inspection instead of closed after saving."""
    plt = pytest.importorskip("matplotlib.pyplot")
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        fig.clf()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_plots_label_every_point_title_the_run_and_keep_legends_off_the_data(run_dir, captured_figures):
    write_report(run_dir)
    frontier, task_frontier, per_task = captured_figures
    ax = frontier.axes[0]
    labels = [t.get_text() for t in ax.texts]  # points on the same spot share a label: "threshold=0.5/0.9"
    values = sorted(v for text in labels for v in text.split("=")[1].split("/"))
    assert values == ["0.5", "0.9", "2", "4"] and {t.split("=")[0] for t in labels} == {"k", "threshold"}
    assert re.fullmatch(r"score vs tokens per forward: tiny-llada\w* on index, 6 samples per configuration",
                        ax.get_title())
    renderer = frontier.canvas.get_renderer()
    assert not _overlap(ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer))
    panels = [a for a in task_frontier.axes if a.get_visible()]
    assert [a.get_title() for a in panels] == ["copy", "reverse", "sort", "insert_index", "remove_index",
                                               "replace_index"]
    assert all(len(a.lines) == 2 for a in panels)  # one line per policy in every task's panel
    bars = per_task.axes[0]
    zeros = [t for t in bars.texts if t.get_text() == "0"]
    heights = [p.get_height() for p in bars.patches]
    assert len(zeros) == heights.count(0.0)  # every empty bar carries a visible 0


def test_knob_label_names_the_swept_option_or_the_resolved_one():
    from dllm_decode.evals.report import knob_label

    assert knob_label({"options": {"k": 4, "block_length": 8}, "config": {"steps": 8}}) == "k=4"
    assert knob_label({"options": {}, "config": {"threshold": 0.9, "steps": None}}) == "threshold=0.9"

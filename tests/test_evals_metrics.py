"""Grid specs, presets, per-config metrics and PBx on hand-built records (no model needed)."""
from __future__ import annotations

import pytest

from dllm_decode.evals.grid import PRESETS, SamplerSpec, parse_grid, parse_spec, parse_value
from dllm_decode.evals.metrics import pbx, policy_of, summarize


def test_spec_is_a_cartesian_product_and_k_means_tokens_per_step():
    specs = parse_spec("threshold:threshold=0.5,0.9:block_length=8,32")
    assert [s.options for s in specs] == [{"threshold": 0.5, "block_length": 8}, {"threshold": 0.5, "block_length": 32},
                                          {"threshold": 0.9, "block_length": 8}, {"threshold": 0.9, "block_length": 32}]
    k4 = parse_spec("confidence:k=1,4")[1]
    assert k4.label == "confidence k=4"
    assert k4.build(32).config["steps"] == 8
    assert parse_grid(["confidence:k=1", "confidence:k=1,2"]) == [SamplerSpec("confidence", {"k": 1}),
                                                                   SamplerSpec("confidence", {"k": 2})]


@pytest.mark.parametrize("text,value", [("4", 4), ("0.9", 0.9), ("true", True), ("None", None), ("dual", "dual")])
def test_option_values_parse_to_python_types(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize("spec,message", [
    ("confidence:k=3", "`k` must be a positive int dividing `gen_length` \\(32\\), got 3"),
    ("confidence:k=2:steps=4", "`k` and `steps` both set"),
    ("threshold:threshold=1.5", "`threshold` must be a number in"),
    ("threshold:steps=8", "`steps` is not used by 'threshold'"),
    ("nope", "`name` must be one of"),
    ("threshold:gen_length=64", "`gen_length` is set once per run"),
])
def test_bad_configurations_fail_when_built(spec, message):
    with pytest.raises(ValueError, match=message):
        for s in parse_spec(spec):
            s.build(32)


@pytest.mark.parametrize("text,message", [("threshold:threshold", "must look like `option=v1,v2"),
                                          (":k=1", "must look like `name"), ("confidence:k=1:k=2", "given twice")])
def test_malformed_specs_are_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(text)


def test_every_preset_builds_and_parallelbench_covers_the_paper_grid():
    for preset in PRESETS.values():
        for spec in parse_grid(list(preset.samplers)):
            spec.build(32)
    grid = parse_grid(list(PRESETS["parallelbench"].samplers))
    values = lambda name, key: [s.options[key] for s in grid if s.sampler == name]  # noqa: E731
    assert values("confidence", "k") == [1, 2, 4, 8, 16, 32]
    assert values("threshold", "threshold") == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert values("factor", "factor") == [0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9]
    assert 4 <= len(parse_grid(list(PRESETS["quick"].samplers))) <= 6


def record(sampler, options, task, score, nfe, gen=8, wall=0.5, steps=None, sid="0"):
    cid = f"{sampler}{sorted(options.items())}"
    return {"type": "record", "config_id": cid, "sampler": sampler, "options": options, "label": cid,
            "config": {"steps": steps}, "task": task, "id": sid, "score": score, "nfe": nfe, "gen_tokens": gen,
            "canvas_length": 32, "wall_time": wall}


def test_summary_follows_the_accounting_definitions():
    rows = [record("threshold", {"threshold": 0.9}, "copy", 1.0, nfe=8, gen=8, sid="a"),
            record("threshold", {"threshold": 0.9}, "copy", 0.0, nfe=16, gen=4, sid="b"),
            record("threshold", {"threshold": 0.9}, "sort", 1.0, nfe=32, gen=12, sid="c")]
    (entry,) = summarize(rows)["configs"]
    assert entry["per_task"] == {"copy": 0.5, "sort": 1.0}
    assert entry["score"] == pytest.approx(0.75)  # mean over tasks
    assert entry["nfe"] == pytest.approx(56 / 3)
    assert entry["tokens_per_forward"] == pytest.approx(24 / 56)  # generated tokens / forwards
    assert entry["tokens_per_step"] == pytest.approx((32 / 8 + 32 / 16 + 32 / 32) / 3)  # canvas / NFE, averaged
    assert entry["tokens_per_second"] == pytest.approx(24 / 1.5)
    assert entry["per_task_metrics"]["copy"]["nfe"] == 12


def test_pbx_interpolates_adaptive_sweeps_but_not_step_budgets():
    # threshold sweep: (score, TPS) = (1.0, 2), (0.8, 4), (0.5, 8) -> PB90 interpolates to 3, PB60 to 6.67
    rows = [record("threshold", {"threshold": t}, "copy", s, nfe=32 // tps)
            for t, s, tps in ((0.9, 1.0, 2), (0.7, 0.8, 4), (0.5, 0.5, 8))]
    entries = summarize(rows)["configs"]
    assert pbx(entries, 90) == pytest.approx(3.0)
    assert pbx(entries, 80) == pytest.approx(4.0)
    assert pbx(entries, 60) == pytest.approx(4 + (0.6 - 0.8) / (0.5 - 0.8) * 4)
    # the same points as a top-k (step budget) policy: only measured points count
    topk = [record("confidence", {"k": k}, "copy", s, nfe=32 // k, steps=32 // k)
            for k, s in ((2, 1.0), (4, 0.8), (8, 0.5))]
    entries = summarize(topk)["configs"]
    assert pbx(entries, 90) == pytest.approx(2.0)
    assert pbx(entries, 60) == pytest.approx(4.0)
    assert pbx(entries, 100.1) is None
    table = summarize(rows + topk)["pbx"]
    assert table["overall"]["PB90"] == pytest.approx(3.0) and table["confidence"]["PB90"] == pytest.approx(2.0)


def test_an_entropy_bound_sweep_is_one_adaptive_policy():
    """EB's knob moves it along one curve (interpolated: it has no step budget), like threshold's."""
    rows = [record("eb", {"entropy_bound": b}, "copy", s, nfe=32 // tps) for b, s, tps in ((0.1, 1.0, 2), (1, 0.8, 4))]
    entries = summarize(rows)["configs"]
    assert {policy_of(e) for e in entries} == {"eb"}
    assert pbx(entries, 90) == pytest.approx(3.0)

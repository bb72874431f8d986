"""Every numeric, int, choice and flag option refuses strings, bools, NaN and out-of-range values in one
message shape: "`name` must be <rule>, got <value>; <fix>"."""
from __future__ import annotations

import math
import re

import pytest

from dllm_decode import Sampler, validation

SHAPE = re.compile(r"^`\w+` must be .+, got .+; .+$", re.S)

# (sampler, base options, option, kind, an out-of-range value or None); kinds: number, int, choice, flag
OPTIONS = [
    ("confidence", {}, "gen_length", "int", 0),
    ("confidence", {}, "block_length", "int", 0),
    ("confidence", {}, "steps", "int", 0),
    ("confidence", {}, "temperature", "number", -0.1),
    ("confidence", {}, "cfg_scale", "number", -1),
    ("confidence", {}, "seed", "int", -1),
    ("confidence", {}, "logits_eos_inf", "flag", None),
    ("confidence", {}, "confidence_eos_eot_inf", "flag", None),
    ("confidence", {}, "trace", "flag", None),
    ("confidence", {}, "chat_template", "flag", None),
    ("threshold", {}, "threshold", "number", 1.5),
    ("factor", {}, "factor", "number", 0),
    ("factor", {}, "legacy", "flag", None),
    ("entropy_threshold", {}, "entropy_threshold", "number", 0),
    ("confidence", {}, "remasking", "choice", None),
    ("maskgit_plus", {}, "alg", "choice", None),
    ("maskgit_plus", {}, "alg_temp", "number", -1),
    ("creditdecoding", {}, "alpha", "number", -1),
    ("creditdecoding", {}, "gamma", "number", -1),
    ("creditdecoding", {}, "beta", "number", 0),
    ("creditdecoding", {}, "threshold", "number", 0),
    ("creditdecoding", {}, "slots", "int", 0),
    ("localleap", {}, "threshold", "number", 1.5),
    ("localleap", {}, "relaxed_threshold", "number", 0),
    ("localleap", {}, "radius", "int", -1),
    ("eb", {}, "entropy_bound", "number", -0.5),
    ("adablock", {}, "delimiter_threshold", "number", -0.5),
    ("adablock", {}, "default_block_length", "int", 0),
    ("prophet", {}, "early", "number", -1),
    ("prophet", {}, "mid", "number", -1),
    ("prophet", {}, "late", "number", -1),
    ("prophet", {}, "answer_start", "int", -1),
    ("prophet", {"answer_start": 4}, "answer_length", "int", 0),
    ("sched", {}, "tau_low", "number", -1),
    ("sched", {}, "tau_high", "number", -1),
    ("sched", {}, "schedule", "choice", None),
    ("sched", {"schedule": "exponential"}, "k", "number", 0),
    ("threshold", {"cache": "dual"}, "refresh", "int", 0),
    ("threshold", {"cache": "prefix"}, "refresh", "int", 0),
    ("threshold", {"cache": "delayed"}, "refresh", "int", 0),
    ("threshold", {"cache": "delayed"}, "delay_mode", "choice", None),
    ("threshold", {"cache": "delayed", "delay_mode": "greedy"}, "greedy_window", "int", -1),
    ("threshold", {"cache": "windowed"}, "refresh", "int", 0),
    ("threshold", {"cache": "windowed"}, "active_masks", "int", 0),
    ("threshold", {"cache": "windowed"}, "attended_masks", "int", 0),
    ("confidence", {"attention": "sparse"}, "select", "number", 0),
    ("confidence", {"attention": "sparse"}, "sparse_block", "int", 0),
    ("confidence", {"attention": "sparse"}, "skip", "number", 1.0),
    ("confidence", {"attention": "sparse"}, "sparse_backend", "choice", None),
    ("ssd", {}, "draft_length", "int", 1),
    ("s2d2", {}, "route", "choice", None),
    ("s2d2", {"route": "span"}, "min_span", "int", 0),
    ("s2d2", {}, "min_commit", "int", 0),
    ("s2d2", {}, "route_cost", "number", -1),
    ("s2d2", {"route": "ucb"}, "ucb_c", "number", -1),
    ("s2d2", {"route": "hysteresis"}, "hysteresis_on", "number", None),
    ("s2d2", {"route": "hysteresis"}, "hysteresis_off", "number", None),
    ("deer", {"drafter": "llada"}, "draft_length", "int", 0),
    ("eb", {"loop": "uniform"}, "max_denoising_steps", "int", 0),
    ("eb", {"loop": "uniform"}, "stability_threshold", "int", -1),
    ("eb", {"loop": "uniform"}, "t_min", "number", -1),
    ("eb", {"loop": "uniform"}, "t_max", "number", -1),
    ("eb", {"loop": "uniform"}, "confidence_threshold", "number", -1),
    ("wino", {}, "threshold", "number", 1.5),
    ("wino", {}, "threshold_back", "number", 0),
    ("wino", {}, "revision_budget", "int", -1),
    ("llada21", {}, "threshold", "number", 0),
    ("llada21", {}, "edit_threshold", "number", 1.5),
    ("llada21", {}, "max_post_edit_steps", "int", -1),
    ("llada21", {}, "revision_budget", "int", -1),
]

# bad value -> what the message shows after "got"
BAD = {
    "number": [("0.5", "'0.5' (a str)"), (True, "True (a bool)"), (math.nan, "nan"), (None, "None (a NoneType)")],
    "int": [("3", "'3' (a str)"), (True, "True (a bool)"), (2.5, "2.5"), (math.nan, "nan")],
    "choice": [(1, "1 (an int)"), (True, "True (a bool)"), ("nope", "'nope'")],
    "flag": [("yes", "'yes' (a str)"), (1, "1 (an int)")],
}
OPTIONAL = {"block_length", "steps", "seed", "answer_start", "refresh", "chat_template", "max_denoising_steps",
            "stability_threshold", "t_min", "t_max", "confidence_threshold", "revision_budget"}


def cases():
    for sampler, base, option, kind, out_of_range in OPTIONS:
        bads = [(v, shown) for v, shown in BAD[kind] if not (v is None and option in OPTIONAL)]
        if out_of_range is not None:
            bads.append((out_of_range, repr(out_of_range)))
        for value, shown in bads:
            yield pytest.param(sampler, base, option, value, shown, id=f"{sampler}-{option}-{value!r}")


@pytest.mark.parametrize("sampler, base, option, value, shown", cases())
def test_every_option_refuses_each_bad_kind_in_one_shape(sampler, base, option, value, shown, llada):
    base = {k: (llada if v == "llada" else v) for k, v in base.items()}
    with pytest.raises(ValueError) as caught:
        Sampler(sampler, **base, **{option: value})
    message = str(caught.value)
    assert message.startswith(f"`{option}` must be "), message
    assert f", got {shown}; " in message, message
    assert SHAPE.match(message), message


@pytest.mark.parametrize("sampler, options", [
    ("threshold", {"threshold": 1}), ("factor", {"factor": 2}), ("confidence", {"temperature": 1, "cfg_scale": 0}),
    ("confidence", {"attention": "sparse", "select": 1, "skip": 0}), ("creditdecoding", {"alpha": 1, "beta": 1}),
    ("sched", {"tau_low": 0, "tau_high": 5, "schedule": "exponential", "k": 2}),
])
def test_ints_are_accepted_where_floats_are(sampler, options):
    config = Sampler(sampler, **options).config
    assert all(config[key] == value for key, value in options.items())


@pytest.mark.parametrize("call, message", [
    (lambda: validation.number("x", 5, low=0, high=1), "`x` must be a number in [0, 1], got 5; e.g. x=0"),
    (lambda: validation.number("x", 0, low=0, low_open=True), "`x` must be a number > 0, got 0; e.g. x=1"),
    (lambda: validation.number("x", 2, high=1, high_open=True), "`x` must be a number < 1, got 2; e.g. x=1"),
    (lambda: validation.integer("n", 0.0, low=1, fix="why"), "`n` must be an int >= 1, got 0.0; pass an int, not a "
                                                             "float (why)"),
    (lambda: validation.integer("n", "1", none="unset"), "`n` must be None (unset) or an int, got '1' (a str); pass "
                                                         "an int, not a str"),
    (lambda: validation.unit_interval("p", float("inf")), "`p` must be a number in (0, 1], got inf; e.g. p=1"),
    (lambda: validation.choice("c", "z", ("a", "b")), "`c` must be one of ['a', 'b'], got 'z'; e.g. c='a'"),
    (lambda: validation.flag("f", None), "`f` must be True or False, got None (a NoneType); pass f=True or f=False"),
])
def test_default_fixes(call, message):
    with pytest.raises(ValueError) as caught:
        call()
    assert str(caught.value) == message

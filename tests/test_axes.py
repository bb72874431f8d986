"""Every axis accepts a component object or its name: both build the same plan, show the same config and
decode the same tokens; an object whose fields contradict a keyword option is refused, naming both."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from dllm_decode import Sampler
from dllm_decode.cache import CACHES, DualCache, NoCache
from dllm_decode.kernels import SparseAttention
from dllm_decode.samplers import AdaBlock, FixedBlocks, Prophet
from dllm_decode.samplers.editing import TokenEditing
from dllm_decode.samplers.threshold import Threshold
from dllm_decode.samplers.topk import DreamTopK, LLaDATopK
from dllm_decode.speculative import SelfSpeculative

G = 16

# (object form, name form): (first argument, options) each; one row per axis
PAIRS = {
    "rule": ((Threshold(threshold=0.8), {}), ("threshold", {"threshold": 0.8})),
    "blocks": (("threshold", {"blocks": FixedBlocks(4)}), ("threshold", {"block_length": 4})),
    "blocks-adaptive": (("threshold", {"blocks": AdaBlock(delimiter_threshold=0.2, default_block_length=4,
                                                            delimiter_ids=(5, 7))}),
                        ("threshold", {"blocks": "adaptive", "delimiter_threshold": 0.2, "default_block_length": 4,
                                       "delimiter_ids": (5, 7)})),
    "early_commit": (("confidence", {"block_length": 8, "early_commit": Prophet(early=3.0, mid=2.0, late=1.0)}),
                     ("confidence", {"block_length": 8, "early_commit": "prophet", "early": 3.0, "mid": 2.0,
                                     "late": 1.0})),
    "cache": (("threshold", {"block_length": 8, "cache": DualCache(refresh=4)}),
              ("threshold", {"block_length": 8, "cache": "dual", "refresh": 4})),
    "attention": (("confidence", {"block_length": 8, "attention": SparseAttention(select=0.5, sparse_block=4)}),
                  ("confidence", {"block_length": 8, "attention": "sparse", "select": 0.5, "sparse_block": 4})),
    "loop": (("confidence", {"block_length": 8, "loop": SelfSpeculative(draft_length=3)}),
             ("confidence", {"block_length": 8, "loop": "ssd", "draft_length": 3})),
    "revision": (("threshold", {"block_length": 8, "revision": TokenEditing(edit_threshold=0.9, max_post_edit_steps=2)}),
                 ("threshold", {"block_length": 8, "revision": "editing", "edit_threshold": 0.9,
                                "max_post_edit_steps": 2})),
}


@pytest.mark.parametrize("axis", PAIRS)
def test_an_object_equals_its_name_token_for_token(axis, llada, ragged_prompts):
    (first_a, opts_a), (first_b, opts_b) = PAIRS[axis]
    as_object = Sampler(first_a, gen_length=G, **opts_a)
    by_name = Sampler(first_b, gen_length=G, **opts_b)
    assert as_object.config == by_name.config
    assert as_object.plan == by_name.plan
    a, b = as_object.generate(llada, ragged_prompts), by_name.generate(llada, ragged_prompts)
    assert torch.equal(a.canvas, b.canvas) and a.nfe == b.nfe
    assert a.config == b.config


def test_an_object_at_its_defaults_sets_no_option():
    # Prophet() sets no answer region, so its options that need one do not count as given
    assert Sampler("confidence", early_commit=Prophet()).config == Sampler("confidence", early_commit="prophet").config


@pytest.mark.parametrize("first, options, message", [
    ("threshold", {"cache": DualCache(refresh=4), "refresh": 8},
     r"`refresh=8` conflicts with `cache=DualCache\(refresh=4\)`, whose `refresh` is 4; set `refresh` in one place"),
    ("threshold", {"cache": DualCache(), "refresh": 8}, r"`refresh=8` conflicts with `cache=DualCache\(refresh=None\)`"),
    ("threshold", {"blocks": FixedBlocks(8), "block_length": 16}, "`block_length=16` conflicts with `blocks="),
    (Threshold(threshold=0.8), {"threshold": 0.9}, "`threshold=0.9` conflicts with `rule=Threshold"),
])
def test_an_object_contradicted_by_a_keyword_is_refused(first, options, message):
    with pytest.raises(ValueError, match=message):
        Sampler(first, **options)


def test_agreeing_keywords_are_accepted():
    assert Sampler("threshold", cache=DualCache(refresh=4), refresh=4).config["refresh"] == 4


@pytest.mark.parametrize("options, message", [
    ({"cache": SparseAttention()}, "`cache` must be a name or a CacheStrategy, got a SparseAttention instance"),
    ({"threshold": DualCache()}, "`threshold` must be a plain value, got a DualCache instance"),
])
def test_an_object_on_the_wrong_axis_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Sampler("threshold", **options)


def test_the_first_argument_must_be_a_name_or_a_rule():
    with pytest.raises(ValueError, match="`name` must be a sampler name or a CommitRule instance, got int"):
        Sampler(5)


@pytest.mark.parametrize("rule, name", [
    (LLaDATopK(remasking="random"), "random"), (LLaDATopK(), "confidence"), (DreamTopK(alg="entropy"), "entropy"),
    (Threshold(threshold=0.85), "threshold"),  # not s2d2's preset, which also sets a loop
])
def test_a_rule_object_takes_the_preset_it_agrees_with(rule, name):
    sampler = Sampler(rule, gen_length=G)
    assert sampler.name == name and sampler.rule == rule


def test_unregistered_component_classes_are_built_as_given(llada, ragged_prompts):
    @dataclass(frozen=True)
    class RefreshingDual(DualCache):
        name = "refreshing_dual"

    @dataclass(frozen=True)
    class Strict(Threshold):
        name = "strict"

    assert "refreshing_dual" not in CACHES
    custom = Sampler(Strict(threshold=0.7), gen_length=G, block_length=8, cache=RefreshingDual(refresh=2))
    assert custom.name == "strict" and custom.config["cache"] == "refreshing_dual"
    assert isinstance(custom.plan.cache, RefreshingDual) and isinstance(custom.rule, Strict)
    reference = Sampler("threshold", threshold=0.7, gen_length=G, block_length=8, cache="dual", refresh=2)
    assert torch.equal(custom.generate(llada, ragged_prompts).canvas, reference.generate(llada, ragged_prompts).canvas)


def test_no_cache_object_is_the_default():
    assert Sampler("threshold", cache=NoCache()).plan == Sampler("threshold").plan

"""The one compatibility check: every declared need is refused in one shape when unmet, and components
are judged by what they declare, never by their name or type."""
from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import pytest

from dllm_decode import Sampler
from dllm_decode.cache import CACHES, NoCache
from dllm_decode.compat import CAPABILITIES, check_model, check_plan
from dllm_decode.components import Component
from dllm_decode.kernels import ATTENTION, AttentionStrategy
from dllm_decode.plan import LOOPS
from dllm_decode.samplers import BLOCKS, EARLY_COMMITS, AdaBlock, EndOfTextFill
from dllm_decode.samplers.early import BlockEndOfTextFill, EarlyCommit
from dllm_decode.samplers.registry import PRESETS
from dllm_decode.samplers.revision import REVISIONS
from dllm_decode.speculative import DraftFill

SHAPE = re.compile(r"^`\w+='\w+'` (needs|cannot work with|cannot decode) .+ \(.+\), got .+; .+$", re.S)


@dataclasses.dataclass(frozen=True)
class PlainAttention(AttentionStrategy):
    """An attention backend that declares nothing (not registered)."""

    name = "plain"


def every_component_class() -> set[type[Component]]:
    classes = {preset.rule for preset in PRESETS.values()} | {DraftFill, EndOfTextFill, BlockEndOfTextFill}
    for registry in (BLOCKS, EARLY_COMMITS, CACHES, ATTENTION, LOOPS, REVISIONS):
        classes |= set(registry.values())
    return classes


def test_every_declared_capability_is_in_the_vocabulary():
    axes = {"rule", "blocks", "early_commit", "cache", "attention", "loop", "revision", "model"}
    for cls in every_component_class():
        assert cls.offers <= set(CAPABILITIES), cls
        for need in cls.needs:
            assert need.capability in CAPABILITIES and need.axis in axes, (cls, need)


@pytest.fixture(scope="module")
def deer_options(llada):
    return {"drafter": llada}


@pytest.mark.parametrize("name, options, message", [
    ("threshold", {"loop": "ssd"}, "`loop='ssd'` needs a rule that commits, at one token per step"),
    ("ssd", {"eos_fill": True}, "`loop='ssd'` cannot work with an early commit that edits the canvas"),
    ("ssd", {"cache": "prefix"}, "`loop='ssd'` needs a cache that lets a batch of candidate canvases"),
    ("ssd", {"attention": PlainAttention()}, "`loop='ssd'` needs an attention backend that computes attention under any"),
    ("s2d2", {"eos_fill": "block"}, "`loop='s2d2'` needs an early commit that only fills the rest of a row"),
    ("s2d2", {"early_commit": "sched"}, "got early_commit='sched'"),
    ("s2d2", {"cache": "dual"}, "`loop='s2d2'` needs a cache that recomputes every query row"),
    ("s2d2", {"attention": PlainAttention()}, "`loop='s2d2'` needs an attention backend that computes attention"),
    ("threshold", {"loop": "deer", "drafter": None}, "`loop='deer'` needs a rule that fills every eligible mask"),
    ("deer", {"eos_fill": True, "drafter": None}, "`loop='deer'` cannot work with an early commit"),
    ("deer", {"cache": "dual", "drafter": None}, "`loop='deer'` needs a cache that recomputes every query row"),
    ("deer", {"attention": PlainAttention(), "drafter": None}, "`loop='deer'` needs an attention backend that computes"),
    ("confidence", {"attention": "sparse", "cache": "dual"}, "`attention='sparse'` needs a cache that recomputes"),
    ("ssd", {"attention": "sparse"}, "`attention='sparse'` cannot work with a loop that spends its forwards"),
    ("creditdecoding", {"loop": "ssd"}, "`rule='creditdecoding'` cannot work with a loop that spends its forwards"),
    ("random", {"cache": "windowed"}, "`cache='windowed'` cannot work with a rule that picks positions at random"),
    ("origin", {"cache": "windowed"}, "got rule='maskgit_plus' \\(alg='origin'\\)"),
    ("llada21", {"loop": "ssd"}, "`loop='ssd'` cannot work with a revision rule that takes back tokens"),
    ("confidence", {"loop": "s2d2", "revision": "editing"}, "`loop='s2d2'` cannot work with a revision rule"),
    ("deer", {"revision": "wino", "drafter": None}, "`loop='deer'` cannot work with a revision rule"),
    ("eb", {"loop": "uniform", "revision": "editing"}, "`loop='uniform'` cannot work with a revision rule .*got "
                                                       "revision='editing'"),
    ("llada21", {"cache": "windowed"}, "`revision='editing'` needs a cache that recomputes every row of the current"),
    ("llada21", {"blocks": "adaptive"}, "`revision='editing'` needs a block schedule that splits the canvas"),
    ("wino", {"cache": "dual"}, "`revision='wino'` needs a cache that recomputes every query row"),
    ("wino", {"attention": PlainAttention()}, "`revision='wino'` needs an attention backend that computes attention"),
])
def test_each_plan_need_is_refused_in_one_shape(name, options, message, deer_options):
    if "drafter" in options:
        options = {**options, **deer_options}
    with pytest.raises(ValueError, match=message) as caught:
        Sampler(name, gen_length=16, **options)
    assert SHAPE.match(str(caught.value)), str(caught.value)


def test_ssd_refuses_variable_blocks_by_declaration():
    plan = Sampler("ssd", gen_length=16, block_length=8).plan
    with pytest.raises(ValueError, match="`loop='ssd'` needs a block schedule that splits the canvas into equal blocks"):
        check_plan(dataclasses.replace(plan, blocks=AdaBlock()))


def facts(**overrides) -> SimpleNamespace:
    base = dict(name="m", block_size=None, shift=0, autoregressive=False, supports_cache=True, native=True, module=None)
    return SimpleNamespace(**{**base, **overrides})


@pytest.mark.parametrize("name, options, model, message", [
    ("s2d2", {}, facts(), "`loop='s2d2'` needs a block-diffusion model"),
    ("s2d2", {}, facts(block_size=4, shift=1), "`loop='s2d2'` needs a model with unshifted logits"),
    ("prophet", {}, facts(block_size=4), r"`early_commit='prophet'` cannot decode a block-diffusion model .*got m "
                                         r"\(NoneType, a block-diffusion model \(block size 4\), shift 0\)"),
    ("threshold", {"cache": "dual"}, facts(supports_cache=False), "`cache='dual'` needs a model whose layers read"),
    ("wino", {}, facts(block_size=4), "`revision='wino'` cannot decode a block-diffusion model"),
    ("wino", {}, facts(shift=1), "`revision='wino'` needs a model with unshifted logits"),
    ("wino", {}, facts(native=False), "`revision='wino'` needs a model whose forward takes a 4-D attention mask"),
])
def test_each_model_need_is_refused_in_one_shape(name, options, model, message):
    plan = Sampler(name, gen_length=16, **options).plan
    with pytest.raises(ValueError, match=message) as caught:
        check_model(plan, model)
    assert SHAPE.match(str(caught.value)), str(caught.value)
    check_model(plan, facts(block_size=4) if name == "s2d2" else facts())  # a model that has them passes


def test_deer_needs_an_autoregressive_target(llada):
    plan = Sampler("deer", drafter=llada, gen_length=16).plan
    with pytest.raises(ValueError, match="`loop='deer'` needs an autoregressive target"):
        check_model(plan, facts())
    check_model(plan, facts(autoregressive=True))


def test_components_are_judged_by_declarations_not_names():
    @dataclasses.dataclass(frozen=True)
    class Recomputing(NoCache):
        name = "recomputing"  # inherits NoCache's declarations: sparse attention accepts it

    @dataclasses.dataclass(frozen=True)
    class Impostor(NoCache):
        name = "none"  # the old name test would have passed it; it declares nothing, so it is refused
        offers = frozenset()

    Sampler("confidence", gen_length=16, block_length=8, attention="sparse", cache=Recomputing())
    with pytest.raises(ValueError, match="`attention='sparse'` needs a cache that recomputes every query row"):
        Sampler("confidence", gen_length=16, block_length=8, attention="sparse", cache=Impostor())


def test_an_early_commit_declaring_a_settled_fill_passes_s2d2():
    @dataclasses.dataclass(frozen=True)
    class Quiet(EarlyCommit):
        name = "quiet"
        offers = frozenset({"edits_canvas", "settled_eos_fill"})

    plan = Sampler("s2d2", gen_length=16).plan
    check_plan(dataclasses.replace(plan, early=(Quiet(),)))

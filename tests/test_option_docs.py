"""Every option a user can set has a one-line meaning, so `dllm-decode samplers NAME` is never blank."""
from __future__ import annotations

import pytest

from dllm_decode import Sampler, available_samplers
from dllm_decode.cache import CACHES
from dllm_decode.config import DecodeConfig
from dllm_decode.kernels import ATTENTION
from dllm_decode.loop import LOOPS
from dllm_decode.option_docs import COMPONENTS, SHARED, describe
from dllm_decode.samplers.blocks import BLOCKS
from dllm_decode.samplers.early import EARLY_COMMITS
from dllm_decode.samplers.registry import PRESETS


def registered_components() -> list[type]:
    tables = (BLOCKS, EARLY_COMMITS, CACHES, ATTENTION, LOOPS)
    return [p.rule for p in PRESETS.values()] + [cls for table in tables for cls in table.values()]


def test_every_shared_option_is_documented():
    assert sorted(SHARED) == sorted(DecodeConfig.option_names())


@pytest.mark.parametrize("cls", registered_components(), ids=lambda cls: cls.__name__)
def test_every_registered_component_documents_each_option(cls):
    assert cls.__name__ in COMPONENTS, f"add {cls.__name__} to option_docs.COMPONENTS"
    assert sorted(COMPONENTS[cls.__name__]) == sorted(cls.option_names())


@pytest.mark.parametrize("name", available_samplers())
def test_describe_covers_the_resolved_configuration(name):
    rows, needs = describe(name)
    assert all(meaning for _, _, meaning, _ in rows)
    if needs is None:
        assert sorted(option for option, *_ in rows) == sorted(set(Sampler(name).config) - {"sampler"})
        config = Sampler(name).config
        assert all(config[option] == default for option, default, *_ in rows)

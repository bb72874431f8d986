"""Architectures the library implements, keyed by the `model_type` of their published config.json.

Registering them with transformers' Auto classes lets `AutoModel.from_pretrained(dir)` build our code
for a published checkpoint without `trust_remote_code`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from .dream import DreamConfig, DreamModel
from .llada import LLaDAConfig, LLaDAModelLM


@dataclass(frozen=True)
class Architecture:
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    shift: int  # 1 where position i is predicted from hidden state i-1


ARCHITECTURES: dict[str, Architecture] = {
    "llada": Architecture(LLaDAConfig, LLaDAModelLM, shift=0),
    "Dream": Architecture(DreamConfig, DreamModel, shift=1),
}


def register_architecture(arch: Architecture) -> None:
    """Add an architecture (used by the block-diffusion and AR modules) and expose it to Auto classes."""
    model_type = arch.config_class.model_type
    ARCHITECTURES[model_type] = arch
    _register_auto(arch)


VARIANTS: list[tuple[str, Callable[[dict], bool], Architecture]] = []


def register_variant(model_type: str, claims: Callable[[dict], bool], arch: Architecture) -> None:
    """Register `arch`, and let it also load configs whose `model_type` is another architecture's name when
    `claims(config_dict)` holds (LLaDA-MoE's published config says "llada" and carries `num_experts`)."""
    register_architecture(arch)
    VARIANTS.append((model_type, claims, arch))


def architecture_for(config: dict) -> Architecture | None:
    """The architecture that loads a config.json dict: a claiming variant first, else its `model_type`."""
    model_type = config.get("model_type")
    for name, claims, arch in VARIANTS:
        if name == model_type and claims(config):
            return arch
    return ARCHITECTURES.get(model_type)


def _register_auto(arch: Architecture) -> None:
    try:
        AutoConfig.register(arch.config_class.model_type, arch.config_class, exist_ok=True)
        AutoModel.register(arch.config_class, arch.model_class, exist_ok=True)
    except TypeError:  # transformers < 4.46 has no exist_ok
        AutoConfig.register(arch.config_class.model_type, arch.config_class)
        AutoModel.register(arch.config_class, arch.model_class)


for _arch in ARCHITECTURES.values():
    _register_auto(_arch)


def native_facts(module: nn.Module) -> dict | None:
    """Shift and context length of one of our own modules, or None for a foreign module."""
    for arch in ARCHITECTURES.values():
        if isinstance(module, arch.model_class):
            cfg = module.config
            return {"shift": arch.shift, "max_length": getattr(cfg, "max_position_embeddings", None)}
    return None

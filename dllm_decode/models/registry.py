"""Architectures the library implements, keyed by the `model_type` of their published config.json.

Registering them with transformers' Auto classes lets `AutoModelForCausalLM.from_pretrained(dir)` (and
the other Auto classes below) build our code for a published checkpoint without remote code. Why this
also keeps a checkpoint's own modeling_*.py from running: transformers (5.x `auto_factory`,
`configuration_auto`) treats a registered `model_type` as local code, so with `trust_remote_code` unset
it resolves to False without asking, and (checked on 5.25) even with True a class registered from
outside transformers wins over the `auto_map` entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import transformers
from torch import nn
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from .dream import DreamConfig, DreamModel
from .llada import LLaDAConfig, LLaDAModelLM

# The Auto classes published diffusion-LM configs name in `auto_map` (LLaDA: AutoModel and
# AutoModelForCausalLM; Dream: AutoModel; SDAR: AutoModelForCausalLM), plus AutoModelForMaskedLM,
# which users reach for because these are masked LMs. Our model classes are full LMs for all of them.
AUTO_CLASSES = ("AutoModel", "AutoModelForCausalLM", "AutoModelForMaskedLM")


@dataclass(frozen=True)
class Architecture:
    config_class: type[PretrainedConfig]
    model_class: type[PreTrainedModel]
    shift: int  # 1 where position i is predicted from hidden state i-1
    auto_classes: tuple[str, ...] = AUTO_CLASSES  # transformers Auto classes that build `model_class`


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
    AutoConfig.register(arch.config_class.model_type, arch.config_class, exist_ok=True)
    for name in arch.auto_classes:
        getattr(transformers, name).register(arch.config_class, arch.model_class, exist_ok=True)


for _arch in ARCHITECTURES.values():
    _register_auto(_arch)


def native_facts(module: nn.Module) -> dict | None:
    """Shift and context length of one of our own modules, or None for a foreign module."""
    for arch in ARCHITECTURES.values():
        if isinstance(module, arch.model_class):
            cfg = module.config
            return {"shift": arch.shift, "max_length": getattr(cfg, "max_position_embeddings", None)}
    return None

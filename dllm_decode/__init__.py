"""dllm-decode: fast parallel decoding of diffusion language models.

    from dllm_decode import Sampler, load_model
    model = load_model("tiny-llada")
    print(Sampler("threshold", threshold=0.9, gen_length=32).generate(model, "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]").text)

The exported names load on first use (PEP 562), so importing one subpackage (`dllm_decode.kernels`,
say) imports only what that subpackage needs, not the whole library and transformers, and
`dllm-decode --help` stays fast.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {"Sampler": "api", "GenerationResult": "result", "DiffusionLM": "models", "load_model": "models",
            "wrap": "models", "available_samplers": "samplers", "register": "samplers"}
__all__ = ["Sampler", "GenerationResult", "DiffusionLM", "load_model", "wrap", "available_samplers", "register",
           "__version__"]

if TYPE_CHECKING:
    from .api import Sampler
    from .models import DiffusionLM, load_model, wrap
    from .result import GenerationResult
    from .samplers import available_samplers, register


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

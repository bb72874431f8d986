"""dllm-decode: fast parallel decoding of diffusion language models.

    from dllm_decode import Sampler, load_model
    model = load_model("tiny-llada")
    print(Sampler("threshold", threshold=0.9).generate(model, "reverse [ Ann Lee , Bob Ray ]").text)
"""
from .api import Sampler
from .models import DiffusionLM, load_model, wrap
from .result import GenerationResult
from .samplers import available_samplers, register

__version__ = "0.1.0"
__all__ = ["Sampler", "GenerationResult", "DiffusionLM", "load_model", "wrap", "available_samplers", "register",
           "__version__"]

"""dllm-decode: fast parallel decoding of diffusion language models.

    from dllm_decode import Sampler, load_model
    model = load_model("tiny-llada")
    print(Sampler("threshold", threshold=0.9, gen_length=32).generate(model, "reverse [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]").text)
"""
from .api import Sampler
from .models import DiffusionLM, load_model, wrap
from .result import GenerationResult
from .samplers import available_samplers, register
from . import speculative  # noqa: E402,F401 - registers the ssd / s2d2 / deer loops and the SDAR architecture

__version__ = "0.1.0"
__all__ = ["Sampler", "GenerationResult", "DiffusionLM", "load_model", "wrap", "available_samplers", "register",
           "__version__"]

"""Model layer: our own LLaDA / Dream architectures, the decoding adapter, and local loading."""
from .adapter import DiffusionLM, wrap
from .dream import DreamConfig, DreamModel
from .llada import LLaDAConfig, LLaDAModelLM
from .loading import load_model, zoo_names
from .registry import ARCHITECTURES, Architecture, register_architecture
from . import sdar  # noqa: F401 - registers the SDAR architecture, so load_model serves it on its own
from . import llada2, llada_moe  # noqa: F401 - register the published LLaDA2.x and LLaDA-MoE formats

__all__ = ["DiffusionLM", "wrap", "load_model", "zoo_names", "LLaDAConfig", "LLaDAModelLM", "DreamConfig",
           "DreamModel", "ARCHITECTURES", "Architecture", "register_architecture"]

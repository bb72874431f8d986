"""Speculative loops: `ssd` (lossless self-speculation for LLaDA / Dream), `s2d2` (block diffusion verified
by the same model in AR mode) and `deer` (dLLM drafts, AR target verifies), sharing one verifier.

Importing this package registers the loops in `dllm_decode.plan.LOOPS` (each module registers its own)
and their presets by name.
"""
from ..samplers.registry import register
from ..samplers.threshold import Threshold
from ..samplers.topk import LLaDATopK
from ..models.causal import CausalLM, load_causal_lm, wrap_causal_lm
from .deer import DEER, DraftFill
from .s2d2 import S2D2
from .ssd import SelfSpeculative
from .verifier import Verdict, verify

register("ssd", LLaDATopK, rule_defaults={"remasking": "low_confidence"}, defaults={"loop": "ssd"},
         summary="SSD / FreeDave: lossless self-speculation over one-token-per-step confidence decoding",
         aliases=("freedave",), paper="SSD: self-speculative decoding for diffusion LLMs; FreeDave (public code)")

register("deer", DraftFill, defaults={"loop": "deer"},
         summary="DEER: a dLLM drafter fills `draft_length` masks in one step, an AR target verifies (lossless)",
         paper="DEER 2025, draft with diffusion, verify with autoregressive models")
register("s2d2", Threshold, rule_defaults={"threshold": 0.85}, defaults={"loop": "s2d2", "block_length": 4},
         summary="S2D2: block-diffusion drafts verified by the same model in AR mode, routed by expected gain",
         paper="S2D2 2025, self-speculative decoding for block-diffusion models")

__all__ = ["S2D2", "SelfSpeculative", "DEER", "DraftFill", "CausalLM", "load_causal_lm", "wrap_causal_lm", "Verdict",
           "verify"]

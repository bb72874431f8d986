"""Decoding policies: commit rules, block schedules and early-commit hooks, each behind one interface."""
from .base import CommitRule, Decision, StepInput, TokenOptions
from .blocks import BlockSchedule, FixedBlocks
from .early import EarlyCommit, EndOfTextFill
from .registry import PRESETS, Preset, available_samplers, register

__all__ = ["CommitRule", "Decision", "StepInput", "TokenOptions", "BlockSchedule", "FixedBlocks", "EarlyCommit",
           "EndOfTextFill", "PRESETS", "Preset", "available_samplers", "register"]

"""Decoding policies: commit rules, block schedules and early-commit hooks, each behind one interface."""
from .adablock import AdaBlock
from .base import CommitRule, Decision, StepInput, TokenOptions
from .blocks import BLOCKS, BlockSchedule, FixedBlocks
from .early import EARLY_COMMITS, EarlyCommit, EndOfTextFill
from .prophet import Prophet
from .registry import PRESETS, Preset, available_samplers, register
from .sched import SchED

__all__ = ["CommitRule", "Decision", "StepInput", "TokenOptions", "BLOCKS", "BlockSchedule", "FixedBlocks", "AdaBlock",
           "EARLY_COMMITS", "EarlyCommit", "EndOfTextFill", "Prophet", "SchED", "PRESETS", "Preset",
           "available_samplers", "register"]

"""`Sampler`: a sampler name plus options -> a validated, composed decoding plan; `generate` runs it.

    Sampler("threshold", gen_length=256, block_length=32, threshold=0.9).generate(model, prompt)

Every option is checked when the Sampler is built; an unknown name or option, or one the chosen
policy would ignore, raises `ValueError` naming the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from .config import DecodeConfig
from .loop import DecodePlan, denoise
from .models.adapter import DiffusionLM
from .prompts import encode_prompts
from .result import GenerationResult, build_result
from .samplers.base import CommitRule, TokenOptions
from .samplers.blocks import FixedBlocks
from .samplers.early import EarlyCommit, EndOfTextFill
from .samplers.registry import resolve
from .state import new_state


class Sampler:
    """A decoding strategy: commit rule + block schedule + early commit, with its paper's defaults."""

    def __init__(self, name: str, **options: Any) -> None:
        self.name, preset = resolve(name)
        rule_fields = set(preset.rule.option_names())
        general_fields = set(DecodeConfig.option_names())
        unknown = set(options) - rule_fields - general_fields
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for sampler {name!r}; valid options: "
                             f"{sorted(rule_fields | general_fields)}")
        rule_options = {**preset.rule_defaults, **{k: v for k, v in options.items() if k in rule_fields}}
        general = {**preset.defaults, **{k: v for k, v in options.items() if k in general_fields}}
        self.rule: CommitRule = preset.rule(**rule_options)
        if not self.rule.uses_steps and general.get("steps") is not None:
            raise ValueError(f"`steps` is not used by {name!r}, which decodes each block until it has no masks; "
                             f"remove `steps` or use a step-budget sampler such as 'confidence'")
        config = DecodeConfig(**general)
        if config.block_length is None:
            block = self.rule.default_block_length or config.gen_length
            config = dataclasses.replace(config, block_length=min(block, config.gen_length) if config.gen_length %
                                         min(block, config.gen_length) == 0 else config.gen_length)
        self.decode = config
        self.plan = self._plan()

    def _plan(self) -> DecodePlan:
        cfg = self.decode
        blocks = FixedBlocks(cfg.block_length)
        steps_per_block = None
        if self.rule.uses_steps:
            n_blocks = blocks.num_blocks(cfg.gen_length)
            steps = cfg.steps if cfg.steps is not None else cfg.gen_length
            if steps % n_blocks or steps < n_blocks:
                raise ValueError(f"`steps` must be a positive multiple of the number of blocks ({n_blocks} = "
                                 f"gen_length {cfg.gen_length} / block_length {cfg.block_length}), got {steps}")
            steps_per_block = steps // n_blocks
        early: tuple[EarlyCommit, ...] = (EndOfTextFill(),) if cfg.early_commit == "eos_fill" else ()
        tokens = TokenOptions(cfg.temperature, cfg.logits_eos_inf, cfg.confidence_eos_eot_inf)
        return DecodePlan(self.rule, blocks, early, tokens, steps_per_block, cfg.cfg_scale)

    @property
    def config(self) -> dict[str, Any]:
        """The full resolved configuration: sampler name, shared options and rule options."""
        rule = {f.name: getattr(self.rule, f.name) for f in dataclasses.fields(self.rule)}
        steps = None if self.plan.steps_per_block is None else self.plan.steps_per_block * self.plan.blocks.num_blocks(
            self.decode.gen_length)
        return {"sampler": self.name, **dataclasses.asdict(self.decode), "steps": steps, **rule}

    def __repr__(self) -> str:
        return f"Sampler({self.name!r}, {', '.join(f'{k}={v!r}' for k, v in self.config.items() if k != 'sampler')})"

    @torch.no_grad()
    def generate(self, model: DiffusionLM, prompt: Any) -> GenerationResult:
        """Decode one prompt or a batch: str, list[str], LongTensor [L] or [B, L], or a list of 1-D tensors."""
        if not isinstance(model, DiffusionLM):
            raise ValueError(f"`model` must be a DiffusionLM from `load_model` or `wrap`, got {type(model).__name__}")
        cfg = self.decode
        prompts = encode_prompts(model, prompt, cfg.chat_template)
        longest = max(p.numel() for p in prompts)
        if model.max_length is not None and longest + cfg.gen_length > model.max_length:
            raise ValueError(f"prompt length {longest} + `gen_length` {cfg.gen_length} must be <= the model's context "
                             f"{model.max_length}; shorten the prompt or lower `gen_length`")
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=model.device).manual_seed(cfg.seed)
        state = new_state(prompts, cfg.gen_length, self.plan.blocks.first_end(cfg.gen_length), model.pad_id,
                          model.mask_id, cfg.trace)
        state.rule_state = self.rule.init_state(len(prompts), state.x.device)
        _synchronize(model.device)
        start = time.perf_counter()
        denoise(model, state, self.plan, generator)
        _synchronize(model.device)
        return build_result(model, state, time.perf_counter() - start, self.config)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

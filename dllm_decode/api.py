"""`Sampler`: a sampler name plus options -> a validated, composed decoding plan; `generate` runs it.

    Sampler("threshold", gen_length=256, block_length=32, threshold=0.9).generate(model, prompt)

Every option is checked when the Sampler is built; an unknown name or option, or one the chosen
policy would ignore, raises `ValueError` naming the value and what is allowed. Options left unset that
depend on the model (`gen_length`, `block_length`, AdaBlock's delimiters) read "auto" until `generate`
resolves them against the model it receives (`Sampler.fit`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import torch

from . import loop, speculative, uniform  # noqa: F401 - register the loops (`denoise`, `uniform`; `ssd`, `s2d2`, `deer`)
from .axes import AXES, resolve_rule, unpack_axes
from .compat import check_model, check_plan
from .components import Component
from .config import DecodeConfig, fit_lengths
from .driver import Driver
from .loop import StepEvent
from .plan import DecodePlan
from .models.adapter import DiffusionLM
from .models.causal import as_causal_target
from .prompts import encode_prompts
from .result import GenerationResult, build_result
from .samplers.base import CommitRule, TokenOptions
from .samplers.blocks import BLOCKS, FixedBlocks
from .samplers.early import BlockEndOfTextFill, EndOfTextFill
from .samplers.registry import Preset
from .state import DecodeState, new_state


class Sampler:
    """A decoding strategy: commit rule, block schedule, early commit, cache, attention and loop.

    `name` is a preset name (a commit rule plus its paper's defaults) or a `CommitRule` instance; every
    axis stays overridable by keyword, by name or as an object, e.g.
    `Sampler("creditdecoding", blocks="adaptive", early_commit="sched", cache=DualCache(refresh=4))`.
    An object reads as its name plus the options it sets (see `axes.py`): both forms build the same plan.
    """

    def __init__(self, name: str | CommitRule, **options: Any) -> None:
        canonical, preset, options = resolve_rule(name, options)
        options, custom = unpack_axes(options)
        self._build(canonical, preset, custom, options, frozenset(options))

    def _build(self, name: str, preset: Preset, custom: dict[str, type[Component]], options: dict[str, Any],
               given: frozenset[str]) -> None:
        """`given`: the options the user set (components' `check` judges only those; the rest were fitted).
        `custom`: axis -> the class of a user's component instance that no registry holds under its name."""
        self.name, self.preset, self._custom = name, preset, custom
        self.rule, self.decode, self.plan = self._compose(name, options, given)
        # the user's options as their components normalised them (e.g. a drafter path, loaded once here)
        self.options = {**options, **{key: getattr(part, key) for part in self.plan.components()
                                      for key in part.option_names() if key in options}}
        auto = set() if "gen_length" in options else {"gen_length"} | ({"steps"} if self.rule.uses_steps else set())
        if "block_length" not in options and not self.plan.blocks.variable:
            auto.add("block_length")
        self.auto = frozenset(auto - set(options))  # resolved against the model when `generate` sees it
        self._fitted: dict[tuple, Sampler] = {}

    def _compose(self, name: str, options: dict[str, Any],
                 given: frozenset[str]) -> tuple[CommitRule, DecodeConfig, DecodePlan]:
        """Validate every option and build the plan (lengths left unset take their model-free defaults)."""
        general_names = set(DecodeConfig.option_names())
        merged = {**self.preset.defaults, **options}
        config = DecodeConfig(**{k: v for k, v in merged.items() if k in general_names})
        classes = self._classes(self.preset.rule, config, self._custom)
        owners = _owners(classes)
        unknown = set(options) - general_names - set(owners)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for sampler {name!r} with this composition; "
                             f"valid options: {sorted(general_names | set(owners))}")
        routed: dict[str, dict[str, Any]] = {axis: {} for axis in classes}
        for key, value in {**self.preset.rule_defaults, **merged}.items():
            if key in owners:
                routed[owners[key]][key] = value
        rule = classes["rule"].build(config, routed["rule"])
        if not rule.uses_steps and config.steps is not None:
            raise ValueError(f"`steps` is not used by {name!r}, which decodes each block until it has no masks; "
                             f"remove `steps` or use a step-budget sampler such as 'confidence'")
        blocks = self._custom.get("blocks") or BLOCKS.get(config.blocks, FixedBlocks)
        if config.block_length is None and not blocks.variable:
            block = min(rule.default_block_length or config.gen_length, config.gen_length)
            config = dataclasses.replace(config, block_length=block if config.gen_length % block == 0
                                         else config.gen_length)
        parts = {axis: cls.build(config, routed[axis]) for axis, cls in classes.items() if axis != "rule"}
        plan = self._plan(rule, parts, config)
        check_plan(plan)
        for part in plan.components():
            part.check(plan, config, given)
        return rule, config, plan

    def fit(self, model: DiffusionLM, prompt_length: int) -> "Sampler":
        """This sampler with the options left unset resolved against `model` and the longest prompt:
        `gen_length` fits the context, `block_length` follows a block-diffusion model's block size, and
        components resolve theirs (AdaBlock's delimiters from the tokenizer). Explicit values the model
        cannot serve raise `ValueError` naming both. Resolved samplers are kept, one per outcome."""
        given = frozenset(self.options)
        check_model(self.plan, model)
        fitted: dict[str, Any] = {}
        for part in self.plan.components():
            fitted.update(part.fit(model, given))
        rule_block = self.preset.defaults.get("block_length", self.rule.default_block_length)
        fitted.update(fit_lengths(model, prompt_length, self.options, rule_block, self.plan.blocks.variable))
        if not fitted:
            return self
        key = tuple(sorted((k, repr(v)) for k, v in fitted.items()))
        if key not in self._fitted:
            resolved = object.__new__(Sampler)
            resolved._build(self.name, self.preset, self._custom, {**self.options, **fitted}, frozenset(self.options))
            self._fitted[key] = resolved
        return self._fitted[key]

    @staticmethod
    def _classes(rule: type[CommitRule], config: DecodeConfig,
                 custom: dict[str, type[Component]] | None = None) -> dict[str, type[Component]]:
        """The class per axis: a user's unregistered component class, else its registry's entry for the name."""
        custom = custom or {}
        classes: dict[str, type[Component]] = {"rule": rule}
        for axis, registry in AXES.items():
            name = getattr(config, axis)
            if axis == "early_commit" and name in (None, "none"):
                continue
            classes[axis] = custom.get(axis) or registry.get(name)
        return classes

    def _plan(self, rule: CommitRule, parts: dict[str, Component], cfg: DecodeConfig) -> DecodePlan:
        blocks = parts["blocks"]
        steps_per_block = None
        if rule.uses_steps:
            n_blocks = blocks.num_blocks(cfg.gen_length)
            if n_blocks is None:
                raise ValueError(f"`blocks={cfg.blocks!r}` has variable block lengths, so a step-budget rule "
                                 f"({self.name!r}) cannot split its steps; use a threshold-style sampler")
            steps = cfg.steps if cfg.steps is not None else cfg.gen_length
            if steps % n_blocks or steps < n_blocks:
                raise ValueError(f"`steps` must be a positive multiple of the number of blocks ({n_blocks} = "
                                 f"gen_length {cfg.gen_length} / block_length {cfg.block_length}), got {steps}")
            steps_per_block = steps // n_blocks
        fill = BlockEndOfTextFill() if cfg.eos_fill == "block" else EndOfTextFill() if cfg.eos_fill else None
        early = tuple(p for p in (parts.get("early_commit"), fill) if p)
        tokens = TokenOptions(cfg.temperature, cfg.logits_eos_inf, cfg.confidence_eos_eot_inf)
        return DecodePlan(rule, blocks, early, tokens, steps_per_block, cfg.cfg_scale, parts["cache"],
                          parts["attention"], parts["loop"], parts["revision"])

    @property
    def config(self) -> dict[str, Any]:
        """The full configuration: sampler name, shared options and every component's options. Options
        resolved against the model (see `fit`) read "auto" here; `GenerationResult.config` has their values."""
        steps = self.plan.step_budget(self.decode.gen_length)
        resolved = {"sampler": self.name, **dataclasses.asdict(self.decode), "steps": steps}
        for part in self.plan.components():
            resolved.update(part.options())
        return {**resolved, **{key: "auto" for key in self.auto}}

    def __repr__(self) -> str:
        return f"Sampler({self.name!r}, {', '.join(f'{k}={v!r}' for k, v in self.config.items() if k != 'sampler')})"

    @torch.no_grad()
    def generate(self, model: DiffusionLM, prompt: Any, *, canvas: torch.Tensor | None = None,
                 on_step: Callable[[StepEvent], None] | None = None) -> GenerationResult:
        """Decode one prompt or a batch: str, list[str], LongTensor [L] or [B, L], or a list of 1-D tensors.
        `model` is a `DiffusionLM`, or a plain transformers causal LM (DEER's target), wrapped here.

        `canvas` (LongTensor [B, gen_length], optional) is the starting canvas for infilling: positions
        holding the model's mask id are decoded, every other token is given and never changes.
        `on_step(event)` streams each step's new commits (`loop.StepEvent`: step, [B, G] committed mask,
        their tokens, the canvas), as CPU tensors; it costs one device->host copy per step, only when given.
        """
        fitted, model, state, generator = self._new_request(model, prompt, canvas, on_step)
        plan = fitted.plan
        _synchronize(model.device)
        start = time.perf_counter()
        plan.loop.run(model, state, plan, generator)
        _synchronize(model.device)
        return build_result(model, state, time.perf_counter() - start, fitted.config, plan.cache.nbytes(state),
                            {**plan.loop.stats(state), **plan.revision.stats(state.revision_state), **model.stats()})

    @torch.no_grad()
    def start(self, model: DiffusionLM, prompt: Any, *, canvas: torch.Tensor | None = None,
              on_step: Callable[[StepEvent], None] | None = None) -> Driver:
        """The request `generate` would decode, set up and not yet stepped: its `Driver`, which a caller advances
        with `step()` (or `begin_step()` / `end_step(logits)`), as a server interleaving requests does. Arguments
        as `generate`; a loop that does not step (`uniform`) raises `ValueError`. Step it under `torch.no_grad()`."""
        fitted, model, state, generator = self._new_request(model, prompt, canvas, on_step)
        return Driver(model, state, fitted.plan, generator)

    def _new_request(self, model: Any, prompt: Any, canvas: torch.Tensor | None,
                     on_step: Callable[[StepEvent], None] | None) -> tuple["Sampler", DiffusionLM, DecodeState,
                                                                           torch.Generator | None]:
        """The set-up `generate` and `start` share: the prompts encoded, this sampler fitted to them, the request's
        state (canvas, rule state, `on_step`), its generator; the model told a request begins."""
        if on_step is not None and not callable(on_step):
            raise ValueError(f"`on_step` must be a callable taking a StepEvent, got {type(on_step).__name__}; "
                             "e.g. on_step=lambda event: print(event.step, event.committed.sum().item())")
        model = as_causal_target(model)
        if not isinstance(model, DiffusionLM):
            raise ValueError(f"`model` must be a DiffusionLM from `load_model` or `wrap`, got {type(model).__name__}")
        prompts = encode_prompts(model, prompt, self.decode.chat_template)
        fitted = self.fit(model, max(p.numel() for p in prompts))
        cfg, plan = fitted.decode, fitted.plan
        generator = None
        if cfg.seed is not None:
            generator = torch.Generator(device=model.device).manual_seed(cfg.seed)
        state = new_state(prompts, cfg.gen_length, plan.blocks.first_end(cfg.gen_length), model.pad_id,
                          model.mask_id, cfg.trace)
        if canvas is not None:
            state.canvas.copy_(_check_canvas(canvas, len(prompts), cfg.gen_length, model))  # in place: a view of x
        state.rule_state = fitted.rule.init_state(len(prompts), cfg.gen_length, state.x.device)
        state.on_step = on_step
        model.begin_request()
        return fitted, model, state, generator


def _check_canvas(canvas: Any, batch: int, gen_length: int, model: DiffusionLM) -> torch.Tensor:
    """A starting canvas must be integer ids [B, gen_length] (a row without masks is returned unchanged)."""
    shape = tuple(canvas.shape) if isinstance(canvas, torch.Tensor) else None
    if shape != (batch, gen_length) or canvas.dtype not in (torch.long, torch.int32):
        raise ValueError(f"`canvas` must be an integer LongTensor of shape [batch, gen_length] = [{batch}, {gen_length}]"
                         f", got {type(canvas).__name__} {shape}; build it with the model's mask id where to decode")
    return canvas.to(device=model.device, dtype=torch.long)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _owners(classes: dict[str, type[Component]]) -> dict[str, str]:
    """Option name -> the axis whose component declares it; a name declared twice is ambiguous."""
    owners: dict[str, str] = {}
    for axis, cls in classes.items():
        for option in cls.option_names():
            if option in owners:
                raise ValueError(f"option `{option}` is declared by both the {owners[option]} and the {axis} "
                                 "component; this composition is ambiguous")
            owners[option] = axis
    return owners



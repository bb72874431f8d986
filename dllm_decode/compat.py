"""The one compatibility check: components declare capabilities (`offers`) and requirements (`needs`),
and this module compares them, for a composed plan and for the model it will decode.

No component tests another's name or type; a new component that declares the right capabilities works
with every part that accepts them. Every refusal has one shape:
"`owner` needs <what> (<why>), got <what it got>; <fix>".
"""
from __future__ import annotations

from typing import Iterable

from .components import Component, ModelFacts, Need, PlanView, set_fields

# capability -> what it means, phrased to follow "a <axis> that ..." (plan) or to stand alone (model)
CAPABILITIES: dict[str, str] = {
    # rules
    "random_positions": "picks positions at random",
    "stepwise_confidence": "commits, at one token per step, the single most confident masked position",
    "one_step_fill": "fills every eligible mask in one step",
    # block schedules
    "fixed_grid": "splits the canvas into equal blocks on a fixed grid",
    # early commits
    "edits_canvas": "edits the canvas beside the commit rule",
    "settled_eos_fill": "only fills the rest of a row with EOS after its first settled EOS",
    # caches
    "block_recompute": "recomputes every row of the current block at every step",
    "full_sequence": "recomputes every query row against every key at every step",
    "block_candidates": "lets a batch of candidate canvases share the block-start K/V: no cache, or the dual "
                        "cache refreshed only at block starts",
    # attention backends
    "any_mask": "computes attention under any key mask the loop builds",
    # loops
    "own_forwards": "spends its forwards its own way (drafts, verifications or candidate batches) rather than "
                    "one forward of the active rows per step",
    # revision rules
    "takes_back_tokens": "takes back tokens it has committed (re-masks or replaces them)",
    # models (see `model_capabilities`)
    "block_diffusion": "a block-diffusion model (one with a `block_size`, e.g. tiny-sdar)",
    "unshifted_logits": "a model with unshifted logits (position i predicts token i)",
    "autoregressive": "an autoregressive target (a causal-LM checkpoint from `load_model`, e.g. tiny-ar, or a "
                      "transformers causal LM)",
    "kv_cache": "a model whose layers read a KV cache",
    "mask_forward": "a model whose forward takes a 4-D attention mask (one of our architectures, from `load_model`)",
}
SUBJECTS = {"rule": "a rule", "blocks": "a block schedule", "early_commit": "an early commit", "cache": "a cache",
            "attention": "an attention backend", "loop": "a loop", "revision": "a revision rule"}  # how a plan axis is named in a message


def label(part: Component) -> str:
    """`name` plus the options it sets off their defaults, e.g. 'dual' (refresh=2)."""
    options = {k: v for k, v in set_fields(part).items() if k in part.option_names()}
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if isinstance(v, (int, float, str, tuple, type(None))))
    return f"{part.name!r}" + (f" ({shown})" if shown else "")


def _refusal(owner: tuple[str, Component], need: Need, got: str) -> ValueError:
    axis, part = owner
    meaning = CAPABILITIES[need.capability]
    if need.axis == "model":
        wants = ("needs " if need.present else "cannot decode ") + meaning
    else:
        subject = SUBJECTS[need.axis]
        wants = ("needs " if need.present else "cannot work with ") + f"{subject} that {meaning}"
    return ValueError(f"`{axis}={part.name!r}` {wants} ({need.reason}), got {got}; {need.fix}")


def plan_parts(plan: PlanView) -> Iterable[tuple[str, Component]]:
    """(axis, part) for every part of `plan`, in build order."""
    yield "rule", plan.rule
    yield "blocks", plan.blocks
    for hook in plan.early:
        yield "early_commit", hook
    yield "cache", plan.cache
    yield "attention", plan.attention
    if plan.loop is not None:
        yield "loop", plan.loop
    yield "revision", plan.revision


def check_plan(plan: PlanView) -> None:
    """Raise the first refusal among the plan's parts' `needs` (model needs are `check_model`'s)."""
    parts = list(plan_parts(plan))
    for owner in parts:
        for need in owner[1].needs:
            if need.axis == "model":
                continue
            for axis, part in parts:
                if axis == need.axis and (need.capability in part.capabilities()) != need.present:
                    raise _refusal(owner, need, f"{axis}={label(part)}")


def model_capabilities(model: ModelFacts) -> frozenset[str]:
    """What a model offers, read from its facts."""
    facts = {"block_diffusion": model.block_size is not None, "unshifted_logits": model.shift == 0,
             "autoregressive": model.autoregressive, "kv_cache": model.supports_cache, "mask_forward": model.native}
    return frozenset(name for name, held in facts.items() if held)


def describe_model(model: ModelFacts) -> str:
    """The facts a model need is judged on, e.g. "tiny-sdar (SDARModel, a block-diffusion model (block size 4), shift 0)"."""
    kind = (f"a block-diffusion model (block size {model.block_size})" if model.block_size is not None else
            "an autoregressive model" if model.autoregressive else "no block size")
    return f"{model.name} ({type(getattr(model, 'module', model)).__name__}, {kind}, shift {model.shift})"


def check_part_model(owner: tuple[str, Component], model: ModelFacts) -> None:
    """Raise if `owner`'s model needs are not met by `model`."""
    offered = model_capabilities(model)
    for need in owner[1].needs:
        if need.axis == "model" and (need.capability in offered) != need.present:
            raise _refusal(owner, need, describe_model(model))


def check_model(plan: PlanView, model: ModelFacts) -> None:
    """Raise the first model need of the plan's parts that `model` does not meet."""
    for owner in plan_parts(plan):
        check_part_model(owner, model)


__all__ = ["CAPABILITIES", "check_plan", "check_model", "check_part_model", "model_capabilities", "Need"]


"""One-line meanings of every sampler option, shown by `dllm-decode samplers NAME` (`describe`).

Kept as one table per component class (keyed by the class name, `DecodeConfig` for the shared options)
rather than as field metadata spread over a dozen modules: the meaning of an option sits next to the
others of its axis, and `tests/test_option_docs.py` fails when a registered component gains an option
that has no line here, so the table cannot silently fall behind the code.
"""
from __future__ import annotations

from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any

SHARED = {
    "gen_length": "canvas length: tokens generated per prompt (prompt + gen_length must fit the model's context)",
    "block_length": "semi-AR block length; must divide gen_length (None: the rule's default)",
    "steps": "step budget of a top-k rule over the whole canvas (None: one token per step); k = gen_length/steps",
    "temperature": "sampling temperature of the proposed tokens (0 = greedy argmax)",
    "cfg_scale": "classifier-free guidance scale (0 = off; > 0 costs one more batch row per forward)",
    "logits_eos_inf": "never propose EOS (its logit set to -inf)",
    "confidence_eos_eot_inf": "EOS / end-of-turn proposals get zero confidence, so they commit last",
    "blocks": "block schedule: fixed or adaptive (AdaBlock)",
    "early_commit": "early-commit rule: prophet, sched, or None",
    "eos_fill": "end-of-text fill: True fills the rest with EOS after a settled EOS; \"block\" at block ends",
    "cache": "KV cache: none, prefix, dual, delayed or windowed",
    "attention": "attention backend: dense or sparse (SparseD)",
    "loop": "how forwards are spent: denoise, uniform (DiffusionGemma), or a speculative loop (ssd, s2d2, deer)",
    "revision": "take committed tokens back: none (monotone), wino (re-mask) or editing (LLaDA2.1 token edits)",
    "seed": "seed of the sampling generator (None: torch's global RNG)",
    "chat_template": "wrap text prompts in the tokenizer's chat template (None: when it has one)",
    "trace": "record each position's commit step and the canvas after every step (GenerationResult.trace)",
}

COMPONENTS: dict[str, dict[str, str]] = {
    "LLaDATopK": {"remasking": "which masks commit each step: low_confidence (most confident) or random"},
    "DreamTopK": {"alg": "Dream's position score: origin, maskgit_plus, topk_margin or entropy",
                  "alg_temp": "> 0 draws positions from softmax(score / alg_temp) instead of the top scores"},
    "Threshold": {"threshold": "commit every masked position with confidence >= threshold (at least one)"},
    "Factor": {"factor": "commit the longest confidence-sorted prefix with c_n >= 1 - factor/(n+1)",
               "legacy": "also commit the first failing rank, as the reference code does"},
    "EntropyThreshold": {"entropy_threshold": "commit every position with entropy <= this many nats"},
    "EntropyBound": {"entropy_bound": "commit the lowest-entropy prefix whose entropy sum minus its largest "
                                      "entropy stays <= this many nats (at least one)"},
    "WinoDraft": {"threshold": "WINO's wide-in: draft every masked position with confidence > threshold "
                               "(at most min(max(0.7 m, 5), 20), at least one)"},
    "MaskToToken": {"threshold": "LLaDA2.1 mask-to-token: commit every masked position with confidence > threshold "
                                 "(at least one)"},
    "Monotone": {},
    "Wino": {"threshold_back": "re-mask a committed token whose probability with itself hidden is below this",
             "revision_budget": "re-masks and replacements per row at most (None: only the rule's own bound)"},
    "TokenEditing": {"edit_threshold": "replace a committed token when the new argmax differs and has p > this",
                     "max_post_edit_steps": "edit-only steps per block after its last mask (SGLang default 16)",
                     "revision_budget": "re-masks and replacements per row at most (None: only the rule's own bound)"},
    "CreditDecoding": {"alpha": "weight of log(1 + credit) added to the logits (0 = the threshold rule)",
                       "gamma": "credit earned per step is p_top1 ** gamma",
                       "beta": "credit decay per step",
                       "threshold": "threshold rule on the credit-fused confidences",
                       "slots": "distinct top-1 tokens credited per position"},
    "LocalLeap": {"threshold": "anchor threshold: positions at or above it commit and anchor their neighbours",
                  "relaxed_threshold": "threshold for positions within `radius` of an anchor",
                  "radius": "neighbourhood of an anchor, in columns"},
    "DraftFill": {},
    "FixedBlocks": {},
    "AdaBlock": {"delimiter_threshold": "a block ends after a delimiter predicted with at least this confidence",
                 "default_block_length": "block length when no delimiter is confident enough",
                 "delimiter_ids": "delimiter tokens, as ids or token strings, e.g. (',',) (None: newline)"},
    "Prophet": {"early": "gap threshold (nats) in the first third of the steps",
                "mid": "gap threshold in the middle third", "late": "gap threshold in the last third",
                "answer_start": "offset of the answer region in the canvas (None: the whole canvas)",
                "answer_length": "length of the answer region",
                "anchor": "text or token ids forced just before answer_start (e.g. 'The answer is')"},
    "SchED": {"tau_high": "gap threshold (nats) at the start", "tau_low": "gap threshold at the end",
              "schedule": "how the threshold falls: linear, cosine or exponential",
              "k": "decay rate of the exponential schedule"},
    "NoCache": {},
    "PrefixCache": {"refresh": "steps between extra full refreshes (None: only at block starts)"},
    "DualCache": {"refresh": "steps between extra full refreshes (None: only at block starts)"},
    "DelayedCache": {"delay_mode": "decode: recompute every undecoded column; greedy: only the block's",
                     "refresh": "steps between full refreshes (None: 8 LLaDA-style, 4 Dream-style)",
                     "greedy_window": "greedy mode: also recompute this many columns either side"},
    "WindowedCache": {"active_masks": "first masks recomputed and decodable",
                      "attended_masks": "first masks attended (active + buffer); later ones are pruned",
                      "refresh": "steps between full refreshes"},
    "DenseAttention": {},
    "SparseAttention": {"select": "fraction of key blocks each query block keeps",
                        "sparse_block": "block size of the sparsity pattern",
                        "skip": "fraction of the steps that attend fully before the pattern is fixed",
                        "sparse_backend": "triton, torch or auto"},
    "Denoise": {},
    "SelfSpeculative": {"draft_length": "candidate commits verified per forward (chain depth D)"},
    "UniformDenoise": {
        "max_denoising_steps": "forwards per canvas at most (None: the model's generation config)",
        "t_min": "final sampling temperature of the t_max -> t_min schedule (None: the model's)",
        "t_max": "first sampling temperature of the schedule (None: the model's)",
        "stability_threshold": "stop a canvas once its argmax held this many steps (None: the model's)",
        "confidence_threshold": "and its mean entropy is below this many nats (None: the model's)"},
    "DEER": {"drafter": "the dLLM drafter: a zoo name, a checkpoint path or a loaded model",
             "draft_length": "tokens the drafter proposes per step (k)"},
    "S2D2": {"route": "when to verify: always, never, span, score, hysteresis or ucb",
             "min_span": "span route: verify spans of at least this many masks",
             "route_cost": "cost of a verification forward, in tokens (score / hysteresis routes)",
             "hysteresis_on": "hysteresis route: switch verification on above this balance",
             "hysteresis_off": "hysteresis route: switch it off below this balance",
             "ucb_c": "exploration constant of the ucb route",
             "min_commit": "a verification committing fewer tokens falls back to the base rule"},
}


def option_help(component: Any, option: str) -> str:
    """The meaning of `option` on `component` (a class or instance), or "" when the table lacks it."""
    cls = component if isinstance(component, type) else type(component)
    return COMPONENTS.get(cls.__name__, {}).get(option, "")


def describe(name: str) -> tuple[list[tuple[str, Any, str, str]], str | None]:
    """(option, default, meaning, owner) for every option of sampler `name`'s composition, and the error
    that building it with no options raised (e.g. DEER needs a drafter), if any; then the defaults shown
    are the dataclass defaults ("required" when there is none)."""
    from .api import Sampler
    from .config import DecodeConfig
    from .samplers.registry import resolve

    _, preset = resolve(name)
    try:
        sampler = Sampler(name)
    except ValueError as err:
        general = {k: v for k, v in preset.defaults.items() if k in DecodeConfig.option_names()}
        config = DecodeConfig(**general)
        classes = Sampler._classes(preset.rule, config)
        shared = {f.name: getattr(config, f.name) for f in fields(DecodeConfig)}
        parts = [(cls, {f.name: _default(f, preset.rule_defaults) for f in fields(cls)}) for cls in classes.values()
                 if is_dataclass(cls)]
        return _rows(shared, parts), str(err)
    config = sampler.config
    shared = {name: config[name] for name in DecodeConfig.option_names()}
    parts = [(type(part), part.options()) for part in sampler.plan.components()]
    return _rows(shared, parts), None


def _default(f: Field, overrides: dict[str, Any]) -> Any:
    if f.name in overrides:
        return overrides[f.name]
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else "required"


def _rows(shared: dict[str, Any], parts: list[tuple[type, dict[str, Any]]]) -> list[tuple[str, Any, str, str]]:
    rows = [(name, value, SHARED.get(name, ""), "shared") for name, value in shared.items()]
    for cls, options in parts:
        names = cls.option_names()
        rows += [(name, options[name], option_help(cls, name), cls.__name__) for name in names]
    return rows

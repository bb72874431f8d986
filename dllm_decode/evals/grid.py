"""Sampler grids: `name:opt=v1,v2[:opt2=...]` specs, the `k` shorthand, and named presets.

A grid is a list of `SamplerSpec`s (a sampler name plus the options the user chose). Specs are
expanded as a Cartesian product of each option's values, so `threshold:threshold=0.5,0.9:block_length=8,32`
is four configurations. `k` (tokens per step) is shorthand for `steps = gen_length / k`, the axis
ParallelBench sweeps for top-k samplers.
"""
from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .tasks import SUITES

if TYPE_CHECKING:  # imported in `build`, so the CLI's --help stays free of torch
    from ..api import Sampler


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler configuration as the user wrote it (before defaults are resolved)."""

    sampler: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.sampler} {opts}".strip()

    def sampler_options(self, gen_length: int) -> dict[str, Any]:
        """Options for `Sampler`, with `k` turned into `steps` and the run's canvas length."""
        opts = {k: v for k, v in self.options.items() if k != "k"}
        if "k" in self.options:
            k = self.options["k"]
            if isinstance(k, bool) or not isinstance(k, int) or k < 1 or gen_length % k:
                raise ValueError(f"`k` must be a positive int dividing `gen_length` ({gen_length}), got {k!r}")
            if "steps" in opts:
                raise ValueError(f"`k` and `steps` both set for {self.sampler!r}; `k` is shorthand for "
                                 "steps = gen_length / k, so give only one")
            opts["steps"] = gen_length // k
        if "gen_length" in opts and opts["gen_length"] != gen_length:
            raise ValueError(f"`gen_length` is set once per run ({gen_length}), got {opts['gen_length']!r} in "
                             f"{self.label!r}; use --gen-length")
        opts["gen_length"] = gen_length
        return opts

    def build(self, gen_length: int) -> Sampler:
        """The validated `Sampler`; unknown names or options raise here, before any decoding."""
        from ..api import Sampler

        return Sampler(self.sampler, **self.sampler_options(gen_length))


def parse_value(text: str) -> Any:
    """`"4"` -> 4, `"0.9"` -> 0.9, `"true"` -> True, `"none"` -> None, `"(',', 13)"` or `"[',']"` -> a tuple
    (Python literal syntax; lists become tuples, as options are frozen), anything else stays a string."""
    stripped = text.strip()
    if stripped[:1] in "([" and stripped[-1:] in ")]":
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            raise ValueError(f"an option value in brackets must be a Python tuple or list literal, e.g. (',', 13) or "
                             f"[0.5, 0.9] (quote strings), got {text!r}") from None
        return tuple(value) if isinstance(value, (list, tuple)) else value
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_option(text: str) -> tuple[str, Any]:
    """`"key=value"` -> (key, parsed value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"an option must look like `key=value`, got {text!r}")
    return key.strip(), parse_value(value)


def parse_spec(text: str) -> list[SamplerSpec]:
    """`"confidence:k=1,2,4"` -> one spec per value (Cartesian product over several options)."""
    name, *parts = text.split(":")
    if not name.strip():
        raise ValueError(f"a sampler spec must look like `name[:option=v1,v2,...]`, got {text!r}")
    axes: dict[str, list[Any]] = {}
    for part in parts:
        key, sep, values = part.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ValueError(f"each option of a sampler spec must look like `option=v1,v2,...`, got {part!r} in "
                             f"{text!r}")
        if key.strip() in axes:
            raise ValueError(f"option {key.strip()!r} given twice in {text!r}; list its values once, comma-separated")
        axes[key.strip()] = [parse_value(v) for v in values.split(",") if v.strip()]
    keys = list(axes)
    return [SamplerSpec(name.strip(), dict(zip(keys, combo))) for combo in itertools.product(*axes.values())]


def parse_grid(texts: list[str] | tuple[str, ...]) -> list[SamplerSpec]:
    """Several specs, in order, without duplicates."""
    specs: list[SamplerSpec] = []
    for text in texts:
        for spec in parse_spec(text):
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise ValueError("`samplers` must name at least one sampler configuration, got none")
    return specs


@dataclass(frozen=True)
class Preset:
    """A named evaluation: the sampler grid plus the suite and its size."""

    samplers: tuple[str, ...]
    suite: str = "waiting-line"
    per_length: int = 25
    description: str = ""

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ValueError(f"`suite` must be one of {sorted(SUITES)}, got {self.suite!r}")


def _series(start: float, stop: float, step: float) -> str:
    count = int(round((stop - start) / step)) + 1
    return ",".join(f"{start + i * step:g}" for i in range(count))


PRESETS: dict[str, Preset] = {
    "quick": Preset(("confidence:k=1,2,4", "threshold:threshold=0.7,0.9", "factor:factor=1.0"), suite="all",
                    per_length=2, description="six baseline configurations on a small draw of every task (13 s on 2 "
                    "CPU cores with `--model oracle`, 1-2 min when the machine is busy)"),
    "oracle-frontier": Preset(
        ("confidence:k=1,2,4,8,16,32", "random:k=1,2,4,8,16,32", "origin:k=1,2,4,8,32", "maskgit_plus:k=1,2,4,8,32",
         "topk_margin:k=1,2,4,8,32", "entropy:k=1,2,4,8,32", "threshold:threshold=0.5,0.7,0.8,0.9,0.95,0.99,1.0",
         "factor:factor=0.25,0.5,1,2,4", "entropy_threshold:entropy_threshold=0.05,0.25,0.5,1,2",
         "creditdecoding:threshold=0.5,0.7,0.9,0.99", "localleap:radius=0,1,2,4,8",
         "localleap:relaxed_threshold=0.5,0.6,0.9", "prophet:k=1,2,4", "sched:tau_high=7.5,15,30",
         "adablock:delimiter_ids=4:threshold=0.7,0.9,0.99", "threshold:eos_fill=true:threshold=0.5,0.7,0.9",
         "confidence:eos_fill=true:k=1,2,4", "ssd:draft_length=2,4,8", "eb:entropy_bound=0.01,0.1,0.3,0.5,1,2,4"),
        suite="all", per_length=5,
        description="each commit rule's main knob swept (benchmarks/oracle_frontier.py; meant for --model oracle)"),
    "parallelbench": Preset(
        ("confidence:k=1,2,4,8,16,32", f"threshold:threshold={_series(0.5, 1.0, 0.1)}",
         f"factor:factor={_series(0.7, 1.9, 0.2)}"),
        description="ParallelBench grid: top-k k in 1..32, threshold 0.5..1.0, factor 0.7..1.9"),
    "parallelbench-random": Preset(
        ("random:k=1,2,4,8,16,32",), description="the top-k grid with random remasking (the lower bound)"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]

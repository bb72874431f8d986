"""Option validation in one message shape: the argument in backticks, the rule, the value received, the fix.

    `threshold` must be a number in (0, 1], got '0.5' (a str); pass a number, not a str
    `threshold` must be a number in (0, 1], got 1.5; for one token per step use Sampler("confidence")

Numbers are Python (or NumPy) ints and floats; bools, strings and NaN are refused wherever a number is
expected, and floats wherever an int is. Components call these from `__post_init__`, `DecodeConfig` too.
This module imports nothing from the package, so every layer may use it.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Sequence

def _article(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _typed(value: Any) -> str:
    """The value with its type, for messages where the type is the problem: '0.5' (a str), 1 (an int)."""
    return f"{value!r} ({_article(type(value).__name__)})"


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _example(low: float | None, high: float | None, low_open: bool, integer: bool) -> Any:
    if low is not None and not low_open:
        return low
    if high is not None:
        return high if low is None or high > low else low
    value = 0 if low is None else low + 1
    return int(value) if integer else value


def _fail(name: str, rule: str, shown: str, fix: str) -> ValueError:
    return ValueError(f"`{name}` must be {rule}, got {shown}; {fix}")


def number(name: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, none: str | None = None, fix: str = "", integer: bool = False) -> None:
    """Raise unless `value` is a real number (an int, with `integer`) within the bounds; `low_open` /
    `high_open` exclude the bound itself. `none`: None is also allowed and means this (shown in the rule)."""
    if none is not None and value is None:
        return
    kind = "an int" if integer else "a number"
    rule = (f"None ({none}) or " if none else "None or " if none == "" else "") + kind + _bounds(
        low, high, low_open, high_open)
    wanted = Integral if integer else Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        real = isinstance(value, Real) and not isinstance(value, bool)  # a float where an int is wanted
        shown, what = (repr(value), "a float") if real else (_typed(value), _article(type(value).__name__))
        raise _fail(name, rule, shown, f"pass {kind}, not {what}" + (f" ({fix})" if fix else ""))
    if isinstance(value, float) and math.isnan(value):
        raise _fail(name, rule, "nan", f"pass {kind}, not NaN" + (f" ({fix})" if fix else ""))
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        raise _fail(name, rule, repr(value), fix or f"e.g. {name}={_example(low, high, low_open, integer)}")


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None, none: str | None = None,
            fix: str = "") -> None:
    """Raise unless `value` is an int (not a bool or a float) within [low, high]."""
    number(name, value, low=low, high=high, none=none, fix=fix, integer=True)


def unit_interval(name: str, value: Any, fix: str = "") -> None:
    """A probability threshold: a number in (0, 1]."""
    number(name, value, low=0, high=1, low_open=True, fix=fix)


def choice(name: str, value: Any, choices: Sequence[Any], fix: str = "") -> None:
    """Raise unless `value` is one of `choices` (compared by equality, never by truthiness)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        shown = repr(value) if isinstance(value, str) else _typed(value)
        fix = fix or f"e.g. {name}={choices[0]!r}"
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {shown}; {fix}")


def flag(name: str, value: Any, *, none: str | None = None, fix: str = "") -> None:
    """Raise unless `value` is True or False (or None, when `none` says what None means)."""
    if isinstance(value, bool) or (none is not None and value is None):
        return
    rule = (f"None ({none}), " if none else "") + "True or False"
    raise _fail(name, rule, _typed(value), fix or f"pass {name}=True or {name}=False")

"""Text a client may see: the committed prefix of a canvas, cut at `max_tokens` and at a stop string.

Commits are monotone in the denoising loop (a committed token never changes), so the leading run of
committed tokens is final (a revising rule's cohort cuts it at the current block, which a revision may still
change: `Cohort.answers`); a streamed chunk carries what that prefix gained since the last chunk. A tail
that could still grow into a stop string is held back until it cannot.
"""
from __future__ import annotations

from typing import Any


class TextStream:
    """Per request: turns successive id rows into final text deltas, then the full reply."""

    def __init__(self, tokenizer: Any, mask_id: int, max_tokens: int | None, stop: tuple[str, ...]) -> None:
        self.tokenizer, self.mask_id, self.max_tokens, self.stop = tokenizer, mask_id, max_tokens, stop
        self.sent = ""

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return " ".join(map(str, ids))
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def final(self, ids: list[int]) -> tuple[str, int, str]:
        """(text, completion tokens, finish reason) of a finished row's ids (before its first EOS)."""
        cut = ids if self.max_tokens is None else ids[:self.max_tokens]
        text, stopped = self._cut_stop(self.decode(cut))
        reason = "stop" if stopped or self.max_tokens is None or len(ids) < self.max_tokens else "length"
        return text, len(cut), reason

    def delta(self, ids: list[int]) -> tuple[str, bool]:
        """(new final text, whether a stop string is already in it) for a row still decoding."""
        prefix = ids[:ids.index(self.mask_id)] if self.mask_id in ids else ids
        if self.max_tokens is not None:
            prefix = prefix[:self.max_tokens]
        text, stopped = self._cut_stop(self.decode(prefix))
        if not stopped:
            text = text[:len(text) - self._held(text)]
        return self.take(text), stopped

    def take(self, text: str) -> str:
        """The part of `text` not sent yet (text only grows: a prefix's decoding extends the last one's)."""
        if not text.startswith(self.sent):  # a tokenizer merged across the boundary: resend nothing twice
            return ""
        new, self.sent = text[len(self.sent):], text
        return new

    def _cut_stop(self, text: str) -> tuple[str, bool]:
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return (text[:min(hits)], True) if hits else (text, False)

    def _held(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string."""
        return max((n for s in self.stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)

"""The denoising order of a traced generate: a per-step text view and a picture (PNG or HTML).

Both read `GenerationResult.trace`, so they show what the loop did, not a reconstruction: the text view
takes each step's canvas from `history`, the picture places each position at its `commit_step` [B, G]
with its final token.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .result import GenerationResult

MASK, EOS = "_", "."


def token_strings(ids: list[int], tokenizer: Any) -> list[str]:
    """One short string per token id (the ids themselves when there is no tokenizer)."""
    if tokenizer is None:
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]


def _require_trace(result: GenerationResult) -> None:
    if result.trace is None or result.trace.history is None:
        raise ValueError("the denoising order needs a traced run, got a result without a trace; pass "
                         "`trace=True` to Sampler (on the CLI: --trace or -o trace=true)")


def step_view(result: GenerationResult, tokenizer: Any, eos_ids: tuple[int, ...] = ()) -> str:
    """Per row and step: the positions committed and their tokens (end-of-text fills counted), then the
    canvas so far (masks `_`, end-of-text `.`)."""
    _require_trace(result)
    stamps = result.trace.commit_step.cpu()
    lines = []
    for row in range(stamps.shape[0]):
        last = int(stamps[row].max())
        lines.append(f"row {row}: {last + 1} steps, {stamps.shape[1]} positions")
        for step in range(last + 1):
            ids = result.trace.history[step][row].tolist()  # the canvas after this step
            tokens = token_strings(ids, tokenizer)
            done = [0 <= s <= step for s in stamps[row].tolist()]
            new = [p for p, s in enumerate(stamps[row].tolist()) if s == step]
            fills = sum(ids[p] in eos_ids for p in new)
            shown = [f"{p}:{tokens[p]}" for p in new if ids[p] not in eos_ids] + ([f"+{fills} eos"] if fills else [])
            canvas = _canvas_line([EOS if d and i in eos_ids else t if d else MASK
                                   for t, d, i in zip(tokens, done, ids)])
            lines.append(f"  step {step:>3} +{len(new):<3} {' '.join(shown)}")
            lines.append(f"           | {canvas}")
    return "\n".join(lines)


def _canvas_line(cells: list[str]) -> str:
    """Cells joined by spaces, a trailing run of end-of-text fills shortened to `.xN`."""
    n = len(cells)
    while n and cells[n - 1] == EOS:
        n -= 1
    tail = len(cells) - n
    return " ".join(cells[:n] + ([f"{EOS}x{tail}"] if tail else []))


def write_order(result: GenerationResult, tokenizer: Any, path: str | Path) -> Path:
    """Picture of which position was committed at which step: `.png` (matplotlib) or `.html`."""
    _require_trace(result)
    path = Path(path)
    if path.suffix == ".html":
        path.write_text(_order_html(result, tokenizer))
    elif path.suffix == ".png":
        _order_png(result, tokenizer, path)
    else:
        raise ValueError(f"`--trace-out` must end in .png or .html, got {str(path)!r}; e.g. order.png")
    return path


def _order_png(result: GenerationResult, tokenizer: Any, path: Path) -> None:
    from .pyplot import pyplot

    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    stamps = result.trace.commit_step.cpu()
    B, G = stamps.shape
    fig, axes = plt.subplots(B, 1, figsize=(max(6.0, 0.32 * G + 1.5), 0.22 * (int(stamps.max()) + 1) * B + 1.6 * B),
                             squeeze=False)
    for row, ax in enumerate(axes[:, 0]):
        tokens = token_strings(result.canvas[row].tolist(), tokenizer)
        steps = stamps[row].tolist()
        ax.scatter(range(G), steps, s=18, c=steps, cmap="viridis")
        for p, (tok, s) in enumerate(zip(tokens, steps)):
            ax.annotate(tok, (p, s), textcoords="offset points", xytext=(3, 2), fontsize=6, rotation=40)
        ax.set_ylim(max(steps) + 0.5, -0.5)  # step 0 on top: read the picture top-down as time
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-1, G + 1)
        ax.set_xlabel("canvas position")
        ax.set_ylabel("commit step")
        ax.set_title(f"row {row}: denoising order ({result.config.get('sampler', '?')}, {max(steps) + 1} steps)",
                     fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _order_html(result: GenerationResult, tokenizer: Any) -> str:
    """A self-contained table per row: one line per step, one cell per position, filled when committed."""
    stamps = result.trace.commit_step.cpu()
    parts = ["<!doctype html><meta charset='utf-8'><title>dllm-decode denoising order</title>",
             "<style>td{font:11px monospace;padding:1px 3px;border:1px solid #ddd}td.new{background:#fd6}"
             "td.old{background:#eef}</style>"]
    for row in range(stamps.shape[0]):
        tokens = token_strings(result.canvas[row].tolist(), tokenizer)
        parts.append(f"<h3>row {row}</h3><table><tr><th>step</th>"
                     + "".join(f"<th>{p}</th>" for p in range(len(tokens))) + "</tr>")
        for step in range(int(stamps[row].max()) + 1):
            cells = []
            for p, tok in enumerate(tokens):
                s = int(stamps[row, p])
                cls, text = ("new", tok) if s == step else ("old", tok) if 0 <= s < step else ("", "")
                cells.append(f"<td class='{cls}'>{html.escape(text)}</td>")
            parts.append(f"<tr><th>{step}</th>{''.join(cells)}</tr>")
        parts.append("</table>")
    return "\n".join(parts)

"""lm-evaluation-harness model `dllm_decode`: any registered sampler on any loadable diffusion LM.

    python -m dllm_decode.evals.lm_eval_cli --model dllm_decode \
        --model_args pretrained=PATH,sampler=threshold,threshold=0.9 --tasks gsm8k

lm-eval (0.4.x) finds models only in its own registry, filled by `@register_model` at import time; it
does not read the package's `lm_eval` entry point, so importing this module (which
`dllm_decode.evals.lm_eval_cli` does before handing over to lm-eval's CLI) is what registers it.

- `generate_until`: requests with the same `max_gen_toks` (the canvas length) and stop strings are
  decoded as one batch; text is cut at the first stop string. Without `max_gen_toks` (model arg or
  task), the canvas is fitted to the model like `Sampler`'s `gen_length`: min(the checkpoint's
  generation length or 128, context - longest prompt of the batch).
- `loglikelihood`: LLaDA's Monte-Carlo estimate of the masked-diffusion bound. For each sample, draw a
  count l in 1..L (stratified over samples, which lowers variance), mask l random continuation tokens,
  and score -(L / l) * sum of their cross-entropies; average over samples. Seeds derive from the request
  text, so results do not depend on batching or order.
NFE and tokens per forward are logged per request and kept in `request_log`.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from ..api import Sampler
from ..models import load_model

log = logging.getLogger(__name__)


def _as_int(name: str, value: Any, default: int) -> int:
    if value is None or value == "auto":
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        out = 0
    if out < 1:
        raise ValueError(f"`{name}` must be a positive int or 'auto', got {value!r}")
    return out


def cut_at_stops(text: str, until: list[str]) -> str:
    """`text` up to the earliest stop string (lm-eval's `until`)."""
    cuts = [text.find(s) for s in until if s and s in text]
    return text[:min(cuts)] if cuts else text


@register_model("dllm_decode", "dllm-decode")
class DiffusionHarnessLM(LM):
    """An lm-eval `LM` backed by `dllm_decode.Sampler`; extra model_args are sampler options."""

    def __init__(self, pretrained: str, sampler: str = "threshold", batch_size: Any = 16, device: str | None = None,
                 dtype: str | None = None, max_gen_toks: Any = "auto", mc_samples: int = 32, mc_batch_size: int = 64,
                 seed: int = 0, max_batch_size: Any = None, **sampler_options: Any) -> None:
        super().__init__()
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            log.warning("device %r requested (lm-eval's default) but CUDA is unavailable; using the CPU", device)
            device = "cpu"
        self.model = load_model(pretrained, device=device, dtype=dtype)
        self.pretrained = str(pretrained)
        self.sampler_name = sampler
        self.sampler_options = {"chat_template": False, **sampler_options}  # lm-eval applies templates itself
        self.batch_size = _as_int("batch_size", batch_size, 16)
        self.max_gen_toks = self._canvas(max_gen_toks)
        self.mc_samples = _as_int("mc_samples", mc_samples, 32)
        self.mc_batch_size = _as_int("mc_batch_size", mc_batch_size, 64)
        self.seed = int(seed)
        self._samplers: dict[int, Sampler] = {}
        self.request_log: list[dict[str, Any]] = []
        self.sampler_for(self.sampler_options.get("gen_length", self.max_gen_toks))  # validate options now
        if self.model.tokenizer is None:
            raise ValueError(f"`pretrained` must contain a tokenizer for lm-eval, got {pretrained!r} without one")

    # --- lm-eval plumbing -------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.pretrained.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.model.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                        add_generation_prompt=add_generation_prompt)

    def sampler_for(self, gen_length: int | None) -> Sampler:
        """One validated Sampler per canvas length (None: fitted to the model and prompts at generate)."""
        if gen_length not in self._samplers:
            fixed = {} if gen_length is None else {"gen_length": gen_length}
            self._samplers[gen_length] = Sampler(self.sampler_name, **{**self.sampler_options, **fixed})
        return self._samplers[gen_length]

    def _canvas(self, max_gen_toks: Any) -> int | None:
        """`max_gen_toks` as a canvas length, None for "auto"; a value the context cannot hold is refused."""
        if max_gen_toks is None or max_gen_toks == "auto":
            return None
        canvas = _as_int("max_gen_toks", max_gen_toks, 0)
        context = self.model.max_length
        if context is not None and canvas >= context:
            raise ValueError(f"`max_gen_toks` must leave room for the prompt in {self.model.name}'s context ({context} "
                             f"tokens), got {canvas}; lower it, or leave it 'auto' to fit min(128, context - prompt)")
        return canvas

    # --- generation -------------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, req in enumerate(requests):
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            task_canvas = kwargs.pop("max_gen_toks", None)
            canvas = self.max_gen_toks if task_canvas is None else self._canvas(task_canvas)
            ignored = set(kwargs) - {"do_sample", "temperature"}
            if ignored:
                log.debug("generation kwargs %s are not used by diffusion decoding", sorted(ignored))
            groups.setdefault((canvas, tuple(until)), []).append(i)
        for (canvas, until), idxs in groups.items():
            idxs.sort(key=lambda i: len(requests[i].args[0]))  # similar lengths pad less
            sampler = self.sampler_for(canvas)
            for start in range(0, len(idxs), self.batch_size):
                chunk = idxs[start:start + self.batch_size]
                result = sampler.generate(self.model, [requests[i].args[0] for i in chunk])
                for row, i in enumerate(chunk):
                    nfe, tokens = result.row_nfe[row], result.gen_tokens[row]
                    out[i] = cut_at_stops(result.text[row], list(until))
                    self._log({"request": i, "kind": "generate_until", "nfe": nfe, "gen_tokens": tokens,
                               "tokens_per_forward": tokens / max(nfe, 1), "canvas": result.config["gen_length"]})
                    self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
        return [o or "" for o in out]

    def _log(self, entry: dict[str, Any]) -> None:
        self.request_log.append(entry)
        log.info("request %(request)d %(kind)s: nfe=%(nfe)d tokens_per_forward=%(tokens_per_forward).3f", entry)

    # --- likelihood -------------------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.model.tokenizer
        whole = tok(context + continuation, add_special_tokens=False).input_ids
        ctx = tok(context, add_special_tokens=False).input_ids
        cont = whole[len(ctx):] if whole[:len(ctx)] == ctx else tok(continuation, add_special_tokens=False).input_ids
        if not cont:
            raise ValueError(f"`continuation` must encode to at least one token, got {continuation!r}")
        limit = self.model.max_length
        if limit is not None and len(ctx) + len(cont) > limit:
            ctx = ctx[max(len(ctx) + len(cont) - limit, 0):]  # keep the end of the context
        return ctx, cont

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results = []
        for i, req in enumerate(requests):
            context, continuation = req.args
            ctx, cont = self._encode_pair(context, continuation)
            ll, greedy, forwards = self.masked_diffusion_ll(ctx, cont, self._request_seed(context, continuation))
            results.append((ll, greedy))
            self._log({"request": i, "kind": "loglikelihood", "nfe": forwards, "gen_tokens": 0,
                       "tokens_per_forward": 0.0, "mc_samples": self.mc_samples})
            self.cache_hook.add_partial("loglikelihood", req.args, (ll, greedy))
        return results

    def _request_seed(self, context: str, continuation: str) -> int:
        digest = hashlib.sha256(f"{self.seed}\x1f{context}\x1f{continuation}".encode()).digest()
        return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)

    @torch.no_grad()
    def masked_diffusion_ll(self, ctx: list[int], cont: list[int], seed: int) -> tuple[float, bool, int]:
        """(log-likelihood estimate, whether greedy unmasking reproduces `cont`, forwards used)."""
        device, L, n = self.model.device, len(cont), self.mc_samples
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # Stratified mask counts: l_i = 1 + floor((i + u) L / n), i = 0..n-1 covers 1..L evenly.
        u = torch.rand(1, generator=gen).item()
        counts = (1 + ((torch.arange(n) + u) * L / n).floor().long()).clamp(1, L)
        order = torch.rand(n, L, generator=gen).argsort(dim=1)
        masked = torch.zeros(n, L, dtype=torch.bool).scatter_(1, order, torch.arange(L).expand(n, L) < counts[:, None])
        masked = torch.cat([masked, torch.ones(1, L, dtype=torch.bool)])  # last row: all masked, for is_greedy
        seq = torch.tensor(ctx + cont, dtype=torch.long)
        rows = seq.expand(n + 1, -1).clone()
        rows[:, len(ctx):] = torch.where(masked, torch.full_like(masked, self.model.mask_id, dtype=torch.long),
                                         rows[:, len(ctx):])
        target = torch.tensor(cont, dtype=torch.long, device=device)
        cols = torch.arange(len(ctx), len(ctx) + L, device=device)
        losses, forwards, greedy = [], 0, False
        for start in range(0, n + 1, self.mc_batch_size):
            batch = rows[start:start + self.mc_batch_size].to(device)
            B = batch.shape[0]
            logits = self.model.forward(batch, logits_for=cols.expand(B, L)).float()  # [B, L, V]
            forwards += 1
            ce = F.cross_entropy(logits.reshape(B * L, -1), target.repeat(B), reduction="none").view(B, L)
            m = masked[start:start + B].to(device)
            losses.append((ce * m).sum(1) * L / m.sum(1))  # (L / l) * sum of CE over masked tokens
            if start + B == n + 1:
                greedy = bool((logits[-1].argmax(-1) == target).all())
        loss = torch.cat(losses)[:n]  # drop the all-masked greedy row
        return -loss.mean().item(), greedy, forwards

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError("loglikelihood_rolling (perplexity tasks) is not supported by dllm_decode: a "
                                  "masked-diffusion LM needs a prompt to condition on; use loglikelihood tasks")

"""Uniform-noise denoising (DiffusionGemma): random canvases, every position re-predicted, the rest renoised.

Per canvas of `canvas_length` tokens, in order (block diffusion): the encoder appends the prompt (first
canvas) or the previous canvas to a KV cache; the canvas starts as uniform random tokens; each step the
decoder predicts every position, self-conditioned on the previous step's logits, the logits are divided
by a temperature falling linearly from `t_max` to `t_min` (t = t_min + (t_max - t_min) n / N with n = N..1
steps remaining), a token is sampled per position, the commit rule picks which samples to keep and the
others are replaced by fresh random tokens. A row stops when its argmax canvas has not changed for
`stability_threshold` steps and the mean entropy is below `confidence_threshold`, or after N =
`max_denoising_steps`; the canvas written is the last argmax canvas. With an EOS id in the generation config,
a row stops after the canvas holding its first EOS, and later tokens become `pad_token_id`.

"Eligible" here is every canvas position at every step: nothing is masked, acceptance is decided afresh
from each re-prediction (a kept token is only an input to the next step), and the rule's count or threshold
applies per step. The rule decides which positions keep their sample; the token kept is the loop's sample
from the tempered distribution (the rule's own x0 is not used). `temperature` is therefore rejected (the
schedule replaces it); `logits_eos_inf` forbids EOS in the tempered logits before sampling.

Equality with transformers' `model.generate` (same seed, same settings, prompts of one length): the draws come
from the request's generator in transformers' order, per canvas: `randint` [B, canvas] for the initial canvas,
then per step `multinomial` over the B x canvas rows of the tempered softmax followed by `randint` [B, canvas]
for the renoise; the temperature is computed in float32 from an int32 step tensor as transformers does.
`Sampler(seed=s)` seeds a fresh generator, which draws the same stream as `torch.manual_seed(s)` before
`model.generate`; without a seed the draws come from torch's global generator, as in transformers.
Differences: position ids count from each row's first real token (transformers shares one range across a
padded batch, so a padded row is not computed as it would be alone); the canvas always holds `gen_length`
tokens (after a finished batch, the rest is `pad_token_id`); random draws are one stream for the batch, so a
row's tokens depend on its batch neighbours' count (as in transformers).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from . import validation
from .components import Need
from .driver import count_forward, notify_step
from .plan import LOOPS, Loop
from .samplers.base import StepInput, TokenOptions, forbid_eos
from .samplers.eb import token_entropy
from .samplers.revision import WITHOUT_REVISION_HOOK
from .state import DecodeState

if TYPE_CHECKING:
    from .config import DecodeConfig
    from .models.adapter import DiffusionLM


@dataclass
class Encoded:
    """The uniform loop's per-request accounting (`state.loop_state`): encoder forwards (one per canvas)."""

    encoder_forwards: int = 0


@dataclass(frozen=True)
@LOOPS.register
class UniformDenoise(Loop):
    """Options left None take the model's generation defaults (`model.generation`)."""

    max_denoising_steps: int | None = None
    t_min: float | None = None
    t_max: float | None = None
    stability_threshold: int | None = None
    confidence_threshold: float | None = None
    name: ClassVar[str] = "uniform"
    offers: ClassVar[frozenset[str]] = frozenset({"own_forwards"})
    needs: ClassVar[tuple[Need, ...]] = (
        WITHOUT_REVISION_HOOK,
        Need("blocks", "fixed_grid", "the model's `canvas_length` sets the blocks", "leave `blocks` at 'fixed'"),
        Need("early_commit", "edits_canvas", "it stops when the argmax canvas is stable and confident, and after an EOS "
             "when the model's generation config names one", "remove `early_commit` and `eos_fill`", present=False),
        Need("cache", "full_sequence", "the encoder's KV cache is built in", "leave `cache` at 'none'"),
        Need("attention", "any_mask", "the encoder's KV cache is built in", "leave `attention` at 'dense'"),
    )

    def __post_init__(self) -> None:
        for key, minimum in (("max_denoising_steps", 1), ("stability_threshold", 0)):
            validation.integer(key, getattr(self, key), low=minimum, none="the model's default",
                               fix="leave it unset for the model's generation config")
        for key in ("t_min", "t_max", "confidence_threshold"):
            validation.number(key, getattr(self, key), low=0, none="the model's default",
                              fix="leave it unset for the model's generation config")

    def check(self, plan: Any, config: "DecodeConfig", given: frozenset[str]) -> None:
        hint = "DiffusionGemma's uniform loop"
        refusals = [
            ("steps" in given, "`steps` is not used by the uniform loop; set `max_denoising_steps` (per canvas)"),
            ("block_length" in given, "`block_length`/`blocks` are set by the model's `canvas_length` under " + hint),
            (config.temperature > 0, "`temperature` must be 0 under " + hint + ": `t_max` -> `t_min` sets it"),
            (config.cfg_scale > 0, "`cfg_scale` must be 0 under " + hint + " (no unconditional branch)"),
        ]
        for refused, message in refusals:
            if refused:
                raise ValueError(message)

    def settings(self, model: "DiffusionLM") -> dict[str, Any]:
        generation = getattr(model, "generation", None)
        if generation is None or not getattr(model, "canvas_length", 0):
            raise ValueError(f"`loop='uniform'` needs a uniform-noise model (DiffusionGemma from `load_model`), "
                             f"got {model.name}; use the default loop for masked models")
        resolved = {**generation, **{f.name: getattr(self, f.name) for f in fields(self)
                                     if getattr(self, f.name) is not None}}
        if resolved["t_max"] <= resolved["t_min"]:
            raise ValueError(f"`t_max` must be > `t_min`, got t_max={resolved['t_max']}, t_min={resolved['t_min']}")
        return resolved

    def run(self, model: "DiffusionLM", state: DecodeState, plan: Any, generator: torch.Generator | None) -> None:
        run_uniform(model, state, plan, generator, self.settings(model))

    def stats(self, state: DecodeState) -> dict[str, Any]:
        return {"encoder_forwards": state.loop_state.encoder_forwards if isinstance(state.loop_state, Encoded) else 0}


def run_uniform(model: Any, state: DecodeState, plan: Any, generator: torch.Generator | None,
                settings: dict[str, Any]) -> None:
    """Decode every canvas of `state` in order; see the module docstring for the exact procedure."""
    from transformers import DynamicCache

    module, C, G = model.module, model.canvas_length, state.gen_length
    if G % C:
        raise ValueError(f"`gen_length` must be a multiple of the model's canvas_length {C}, got {G}; "
                         f"e.g. gen_length={C * max(1, G // C)}")
    B, P = state.x.shape[0], state.prompt_width
    visible = state.attention_mask if state.attention_mask is not None else torch.ones_like(state.x, dtype=torch.bool)
    cache = DynamicCache(config=module.config.get_text_config(decoder=True))
    finished = torch.zeros(B, dtype=torch.bool, device=state.x.device)
    state.loop_state = Encoded()
    for block in range(G // C):
        state.rule_state = plan.rule.reset(state.rule_state, torch.ones_like(finished))  # every row starts a canvas
        start, end = P + block * C, P + (block + 1) * C
        fed = slice(0, P) if block == 0 else slice(start - C, start)  # the prompt, then the previous canvas
        encode(module, state.x[:, fed], visible[:, :start], state.positions[:, fed], cache)
        state.loop_state.encoder_forwards += 1
        canvas = denoise_canvas(model, state, plan, generator, settings, cache, block, visible[:, :end], finished)
        finished = finalize(state, canvas, block, finished, settings)
        if bool(finished.all()):
            state.canvas[:, end - P:] = model.pad_id  # nothing is generated after every row has ended
            break
    state.done.fill_(True)


def encode(module: Any, ids: Tensor, visible: Tensor, positions: Tensor, cache: Any) -> None:
    """Append `ids` to the encoder's KV cache, with the masks transformers' `generate` builds."""
    ids = ids.clone(memory_format=torch.contiguous_format)
    shape_only = torch.empty((ids.shape[0], ids.shape[1], 0), dtype=module.dtype, device=ids.device)
    masks = module.model.encoder.create_masks_for_generate(config=module.config, inputs_embeds=shape_only,
                                                          attention_mask=visible, cache=cache, position_ids=positions)
    module.model.encoder(input_ids=ids, attention_mask=masks, cache=cache, position_ids=positions)


def denoise_canvas(model: Any, state: DecodeState, plan: Any, generator: torch.Generator | None,
                   settings: dict[str, Any], cache: Any, block: int, visible: Tensor, finished: Tensor) -> Tensor:
    """The denoising steps of one canvas; returns its final argmax canvas [B, C]."""
    module, C, V = model.module, model.canvas_length, model.vocab_size
    B, device, N = state.x.shape[0], state.x.device, settings["max_denoising_steps"]
    columns = slice(state.prompt_width + block * C, state.prompt_width + (block + 1) * C)
    positions = state.positions[:, columns]

    def noise() -> Tensor:  # uniform random tokens for a whole canvas: transformers draws [B, C] even for kept rows
        return torch.randint(0, V, (B, C), generator=generator, device=device)

    current = noise()
    argmax, self_conditioning, done, history = current, None, torch.zeros_like(finished), None
    masks = module.model.decoder.create_diffusion_decoder_attention_mask(
        config=module.config, inputs_embeds=current.unsqueeze(-1), cache=cache, decoder_attention_mask=visible)
    eos_ids = torch.tensor(model.eos_ids, device=device)
    for taken, remaining in enumerate(range(N, 0, -1)):
        logits = module(decoder_input_ids=current, self_conditioning_logits=self_conditioning,
                        decoder_attention_mask=masks, cache=cache, decoder_position_ids=positions).logits
        count_forward(state, ~(done | finished))
        tempered = temper(logits, remaining, settings, eos_ids if plan.tokens.logits_eos_inf else None)
        probs = torch.softmax(tempered, dim=-1, dtype=torch.float32)
        sample = torch.multinomial(probs.view(-1, V), 1, generator=generator).view(B, C)
        new_argmax = tempered.argmax(-1)
        keep = accept(state, plan, tempered, generator, block, taken, N, eos_ids)
        kept = torch.where(keep, sample, current)
        new_current = torch.where(keep, kept, noise())
        # rows already stopped keep their canvas, argmax and logits (transformers' order of updates)
        new_argmax = torch.where(done[:, None], argmax, new_argmax)
        new_current = torch.where(done[:, None], current, new_current)
        if self_conditioning is not None:
            tempered = torch.where(done[:, None, None], self_conditioning, tempered)
        stop, history = stable_and_confident(new_argmax, tempered, history, settings)
        done = done | stop
        current, argmax = new_current, new_argmax
        self_conditioning = tempered.to(module.model.decoder.embed_tokens.weight.dtype)
        if state.history is not None:
            state.history.append(torch.cat([state.canvas[:, :block * C], argmax, state.canvas[:, (block + 1) * C:]],
                                           1).cpu())
        state.step += 1
        if bool(done.all()):  # the step's one host sync
            break
    return argmax


def temper(logits: Tensor, remaining: int, settings: dict[str, Any], forbidden: Tensor | None) -> Tensor:
    """logits / t with t = t_min + (t_max - t_min) n / N, n steps remaining, computed in float32 from an int32
    step count exactly as transformers' `LinearTemperatureScheduleLogitsProcessor` does (same rounding)."""
    n = torch.tensor(remaining, dtype=torch.int32, device=logits.device)
    t_min, t_max = settings["t_min"], settings["t_max"]
    tempered = logits / (t_min + (t_max - t_min) * (n / settings["max_denoising_steps"]))
    return tempered if forbidden is None else forbid_eos(tempered, forbidden)


def accept(state: DecodeState, plan: Any, tempered: Tensor, generator: torch.Generator | None, block: int,
           taken: int, steps: int, eos_ids: Tensor) -> Tensor:
    """[B, C] bool from the commit rule: every canvas position is eligible at every step."""
    B, C = tempered.shape[:2]
    cols = block * C + torch.arange(C, device=tempered.device).expand(B, C)
    step = StepInput(tempered, torch.ones(B, C, dtype=torch.bool, device=tempered.device), cols,
                     torch.full((B,), taken, dtype=torch.long, device=tempered.device),
                     torch.full((B,), C, dtype=torch.long, device=tempered.device), steps, eos_ids, generator,
                     TokenOptions(0.0, False, plan.tokens.confidence_eos_eot_inf), state.rule_state, state.step,
                     steps * (state.gen_length // C))
    decision = plan.rule.commit(step)
    if decision.rule_state is not None:
        state.rule_state = decision.rule_state
    return decision.commit


def stable_and_confident(argmax: Tensor, tempered: Tensor, history: Tensor | None,
                         settings: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
    """Rows whose argmax canvas equals each of the last `stability_threshold` ones and whose mean entropy is
    below `confidence_threshold` (transformers' `StableAndConfidentStoppingCriteria`)."""
    S = settings["stability_threshold"]
    if S == 0:
        stable = torch.ones(argmax.shape[0], dtype=torch.bool, device=argmax.device)
    else:
        if history is None:
            history = torch.full((S, *argmax.shape), -1, dtype=argmax.dtype, device=argmax.device)
        stable = (history == argmax[None]).all(-1).all(0)
        history = torch.cat([history[1:], argmax[None]])
    confident = token_entropy(tempered).mean(-1) < settings["confidence_threshold"]
    return stable & confident, history


def finalize(state: DecodeState, canvas: Tensor, block: int, finished: Tensor, settings: dict[str, Any]) -> Tensor:
    """Write the canvas; with an EOS id, rows finished earlier become pad and tokens after a first EOS too."""
    C = canvas.shape[1]
    eos, pad = settings["eos_token_id"], settings["pad_token_id"]
    if eos is not None:
        eos_ids = torch.tensor(eos, device=canvas.device)
        now = torch.isin(canvas, eos_ids).any(-1)
        if pad is not None:
            canvas = torch.where(finished[:, None], pad, canvas)
            is_eos = torch.isin(canvas, eos_ids)
            count = is_eos.cumsum(-1)
            canvas = torch.where((count > 0) & ~((count == 1) & is_eos) & now.any(), pad, canvas)
        finished = finished | now
    state.canvas[:, block * C:(block + 1) * C] = canvas
    state.commit_step[:, block * C:(block + 1) * C] = state.step - 1
    notify_step(state, state.step - 1)  # a canvas's tokens are final only now, all at once
    return finished

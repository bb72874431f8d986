"""Request bodies of `/v1/completions` and `/v1/chat/completions` -> a validated `Job`.

OpenAI fields map onto the sampler: `max_tokens` -> `gen_length` (rounded up to the block, the reply cut
back to `max_tokens`), `temperature`, `seed`; `stop` cuts the reply. Every other sampler option rides in
`"dllm": {"sampler": NAME, OPTION: VALUE, ...}` and is validated by `Sampler(...)` itself, so the server
accepts exactly what the Python API accepts. An unknown field is an error, never silently ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..api import Sampler
from ..models.adapter import DiffusionLM
from ..prompts import check_vocabulary, encode_text

COMMON = {"model", "max_tokens", "temperature", "seed", "stop", "stream", "stream_options", "n", "user", "dllm"}
FIELDS = {"completion": COMMON | {"prompt"}, "chat": COMMON | {"messages", "max_completion_tokens"}}
SERVER_KEYS = {"sampler", "stream_canvas"}  # keys of `dllm` that are not sampler options
LOCAL = {"trace": "is not served over HTTP; use `dllm-decode generate --trace` or stream with "
                  '"stream_canvas": true',
         "chat_template": "applies to `Sampler.generate`'s text prompts; /v1/chat/completions always uses the model's "
                          "template and /v1/completions encodes its prompt as plain text, so remove it"}
MAPPED = {"gen_length": "max_tokens", "temperature": "temperature", "seed": "seed"}  # sampler option -> its field


class RequestError(ValueError):
    """A bad request: answered with `status` and OpenAI's error JSON naming `param`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.param, self.status, self.kind = param, status, kind


@dataclass
class Job:
    """One validated request: prompt ids, the fitted sampler and how to shape the reply."""

    prompt: torch.Tensor  # [L] long, on the model's device
    sampler: Sampler  # fitted to the model: every option resolved
    max_tokens: int | None  # None: the whole canvas
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    stream_canvas: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class JobBuilder:
    """Turns bodies into jobs for one model and the server's default sampler (`--sampler`, `-o`)."""

    def __init__(self, model: DiffusionLM, model_name: str, sampler: str, options: dict[str, Any]) -> None:
        self.model, self.model_name = model, model_name
        self.default_name, self.default_options = sampler, dict(options)
        for key in set(options) & set(LOCAL):
            raise ValueError(f"`-o {key}` {LOCAL[key]}")
        Sampler(sampler, **options)  # a bad server default fails at start-up, not on the first request
        self._samplers: dict[tuple, Sampler] = {}  # built samplers keep their fitted variants: reuse them

    def build(self, body: Any, kind: str) -> Job:
        if not isinstance(body, dict):
            raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
        unknown = sorted(set(body) - FIELDS[kind])
        if unknown:
            raise RequestError(f"unknown field(s) {unknown}; valid fields: {sorted(FIELDS[kind])}; sampler options "
                               'go in "dllm", e.g. {"dllm": {"sampler": "threshold", "threshold": 0.9}}', unknown[0])
        if body.get("model") not in (None, self.model_name):
            raise RequestError(f"`model` must be {self.model_name!r} (the model this server runs), got "
                               f"{body['model']!r}", "model", 404, "model_not_found")
        if body.get("n", 1) != 1:
            raise RequestError(f"`n` must be 1 (one choice per request), got {body['n']!r}; send several requests", "n")
        name, options, server = self._options(body)
        prompt = self._prompt(body, kind)
        max_tokens = _max_tokens(body)
        sampler = self._fitted(name, options, max_tokens, prompt.numel())
        stream_options = body.get("stream_options") or {}
        if not isinstance(stream_options, dict) or set(stream_options) - {"include_usage"}:
            raise RequestError(f'`stream_options` must be an object like {{"include_usage": true}}, got '
                               f"{stream_options!r}", "stream_options")
        return Job(prompt, sampler, max_tokens, _stop(body.get("stop")), _flag(body, "stream"),
                   bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
                   bool(server.get("stream_canvas", False)))

    def _options(self, body: dict) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(sampler name, sampler options, server-side `dllm` keys). The server's `-o` options apply when the
        request keeps the server's sampler; naming another sampler starts from that sampler's defaults."""
        dllm = body.get("dllm") or {}
        if not isinstance(dllm, dict):
            raise RequestError(f'`dllm` must be an object of sampler options, got {dllm!r}; e.g. '
                               '{"sampler": "threshold", "threshold": 0.9}', "dllm")
        name = dllm.get("sampler", self.default_name)
        options = dict(self.default_options) if name == self.default_name else {}
        for key, value in dllm.items():
            if key in LOCAL:
                raise RequestError(f"`dllm.{key}` {LOCAL[key]}", f"dllm.{key}")
            if key in MAPPED:
                raise RequestError(f"`dllm.{key}` is set through the request's `{MAPPED[key]}` field; move it there",
                                   f"dllm.{key}")
            if key not in SERVER_KEYS:
                options[key] = value
        for key in ("temperature", "seed"):
            if body.get(key) is not None:
                options[key] = body[key]
        return name, options, {k: v for k, v in dllm.items() if k in SERVER_KEYS}

    def _prompt(self, body: dict, kind: str) -> torch.Tensor:
        ids = _chat_ids(self.model, body.get("messages")) if kind == "chat" else \
            _completion_ids(self.model, body.get("prompt"))
        prompt = torch.tensor(ids, dtype=torch.long, device=self.model.device)
        if prompt.numel() == 0:
            raise RequestError("the prompt must hold at least one token, got an empty prompt", "prompt")
        try:
            check_vocabulary(self.model, [prompt])
        except ValueError as err:
            raise RequestError(str(err), "prompt") from None
        return prompt

    def _fitted(self, name: str, options: dict[str, Any], max_tokens: int | None, prompt_length: int) -> Sampler:
        """The sampler for this request, fitted to the model; `gen_length` = `max_tokens` rounded up to the block."""
        try:
            sampler = self._sampler(name, options).fit(self.model, prompt_length)
            block = sampler.decode.block_length
            if max_tokens is not None:
                gen_length = math.ceil(max_tokens / block) * block if block else max_tokens
                sampler = self._sampler(name, {**options, "gen_length": gen_length}).fit(self.model, prompt_length)
        except (ValueError, TypeError) as err:  # TypeError: an option of the wrong type reaching a dataclass
            raise RequestError(str(err), "dllm") from None
        return sampler

    def _sampler(self, name: str, options: dict[str, Any]) -> Sampler:
        key = (name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in self._samplers:
            if len(self._samplers) >= 256:  # bounded: requests choose the options
                self._samplers.pop(next(iter(self._samplers)))
            self._samplers[key] = Sampler(name, **options)
        return self._samplers[key]


def _max_tokens(body: dict) -> int | None:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise RequestError(f"`{key}` must be a positive integer, got {value!r}; omit it to fill the model's "
                           "default canvas", key)
    return value


def _flag(body: dict, key: str) -> bool:
    value = body.get(key, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise RequestError(f"`{key}` must be true or false, got {value!r}", key)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise RequestError(f"`stop` must be a non-empty string or a list of up to 4 of them, got {value!r}", "stop")
    return tuple(stops)


def _completion_ids(model: DiffusionLM, prompt: Any) -> list[int]:
    """A string, encoded as plain text (OpenAI's completions take raw text; chat requests get the template),
    or token ids; a list of one of them."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        try:
            return encode_text(model, prompt, False)
        except ValueError as err:
            raise RequestError(str(err), "prompt") from None
    if isinstance(prompt, list) and prompt and all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
        return prompt
    raise RequestError(f"`prompt` must be a string or a list of token ids (one prompt per request), got "
                       f"{str(prompt)[:80]!r}; send several requests for several prompts", "prompt")


def _chat_ids(model: DiffusionLM, messages: Any) -> list[int]:
    """The model's chat template over `messages`. A model without one takes a single user message as plain
    text, exactly as `Sampler.generate` encodes a string for it."""
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise RequestError('`messages` must be a non-empty list of {"role": ..., "content": "..."} objects, got '
                           f"{str(messages)[:80]!r}", "messages")
    tok = model.tokenizer
    if tok is None:
        raise RequestError(f"{model.name} has no tokenizer, so chat requests cannot be encoded; use /v1/completions "
                           "with token ids", "messages")
    if getattr(tok, "chat_template", None) is None:
        if len(messages) != 1 or messages[0]["role"] != "user":
            raise RequestError(f"{model.name}'s tokenizer has no chat template, so a chat request must be one user "
                               f"message, got {len(messages)} message(s); send one user message", "messages")
        return encode_text(model, messages[0]["content"], False)
    ids = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in messages],
                                  add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

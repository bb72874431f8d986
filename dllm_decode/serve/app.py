"""The Starlette application: OpenAI's completion and chat endpoints, `/v1/models`, `/health`, `/metrics`.

Handlers only validate (`schema`), hand a `Ticket` to the `Scheduler` thread and shape its answers into
OpenAI's JSON or server-sent-event chunks; the scheduler delivers through `call_soon_threadsafe`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..models.adapter import DiffusionLM
from .metrics import Metrics
from .scheduler import QueueFull, Scheduler, Ticket
from .schema import Job, JobBuilder, RequestError
from .stream import TextStream

POLL = 0.5  # seconds between disconnect checks while a non-streamed reply decodes


def error_response(err: RequestError) -> JSONResponse:
    """OpenAI's error shape, with the library's message."""
    return JSONResponse({"error": {"message": str(err), "type": err.kind, "param": err.param, "code": None}},
                        status_code=err.status)


class Server:
    """Routes plus the state they share: one model, one job builder, one scheduler, one set of counters."""

    def __init__(self, model: DiffusionLM, model_name: str, sampler: str, options: dict[str, Any], *,
                 api_key: str | None = None, max_queue: int = 64, max_rows: int = 32) -> None:
        self.model, self.model_name, self.api_key = model, model_name, api_key
        self.builder = JobBuilder(model, model_name, sampler, options)
        self.metrics = Metrics()
        self.scheduler = Scheduler(model, self.metrics, max_queue, max_rows)

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self.scheduler.start()
            yield
            self.scheduler.stop()

        routes = [Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/chat/completions", self.chat, methods=["POST"]),
                  Route("/v1/models", self.models), Route("/health", self.health), Route("/metrics", self.prometheus)]
        return Starlette(routes=routes, lifespan=lifespan)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        denied = self._denied(request)
        return denied or JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "dllm-decode"}]})

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, "completion")

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, "chat")

    def _denied(self, request: Request) -> Response | None:
        if self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        return error_response(RequestError("the `Authorization` header must be `Bearer <key>` with this server's "
                                           "--api-key; pass api_key= to the client", None, 401, "authentication_error"))

    async def _serve(self, request: Request, kind: str) -> Response:
        response = self._denied(request)
        if response is None:
            try:
                response = await self._answer(request, kind)
            except RequestError as err:
                response = error_response(err)
        self.metrics.add_request(request.url.path, response.status_code)
        return response

    async def _answer(self, request: Request, kind: str) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(f"the request body must be valid JSON, got a parse error: {err}") from None
        job = self.builder.build(body, kind)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        ticket = Ticket(job, lambda k, p: loop.call_soon_threadsafe(events.put_nowait, (k, p)))
        try:
            self.scheduler.submit(ticket)
        except QueueFull as err:
            raise RequestError(str(err), None, 429, "rate_limit_error") from None
        reply = Reply(self, kind, job)
        if job.stream:
            return StreamingResponse(self._events(reply, ticket, events), media_type="text/event-stream")
        while True:
            try:
                event, payload = await asyncio.wait_for(events.get(), POLL)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    self.scheduler.cancel(ticket)
                    return Response(status_code=499)
                continue
            if event == "error":
                status, message = payload
                raise RequestError(message, None, status, "invalid_request_error" if status < 500 else "server_error")
            if event == "done":
                return JSONResponse(reply.whole(payload, ticket.submitted))

    async def _events(self, reply: "Reply", ticket: Ticket, events: asyncio.Queue) -> AsyncIterator[str]:
        """Server-sent events; leaving early (client gone) cancels the ticket, which frees its row."""
        finished = False
        try:
            yield reply.sse(reply.chunk("", None, role=True))
            while True:
                event, payload = await events.get()
                if event == "error":
                    status, message = payload
                    yield reply.sse({"error": {"message": message, "param": None, "code": status,
                                               "type": "invalid_request_error" if status < 500 else "server_error"}})
                    break
                for chunk in (reply.progress(payload) if event == "step" else reply.last(payload, ticket.submitted)):
                    yield reply.sse(chunk)
                if event == "done":
                    break
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.scheduler.cancel(ticket)


class Reply:
    """One request's OpenAI-shaped answers: whole JSON, or chunks built from the scheduler's rows."""

    def __init__(self, server: Server, kind: str, job: Job) -> None:
        self.server, self.kind, self.job = server, kind, job
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        model = server.model
        self.text = TextStream(model.tokenizer, model.mask_id, job.max_tokens, job.stop)

    def usage(self, answer: dict, completion: int) -> dict[str, Any]:
        prompt, nfe = self.job.prompt.numel(), answer["nfe"]
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "nfe": nfe, "tokens_per_forward": round(len(answer["ids"]) / max(nfe, 1), 3)}

    def finish(self, answer: dict, submitted: float) -> tuple[str, str, dict[str, Any]]:
        text, completion, reason = self.text.final(answer["ids"])
        usage = self.usage(answer, completion)
        self.server.metrics.add_answer(usage["prompt_tokens"], completion, len(answer["ids"]), answer["nfe"],
                                       time.perf_counter() - submitted)
        return text, reason, usage

    def whole(self, answer: dict, submitted: float) -> dict[str, Any]:
        text, reason, usage = self.finish(answer, submitted)
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if self.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {"id": self.id, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "created": self.created, "model": self.server.model_name, "choices": [choice], "usage": usage}

    def chunk(self, text: str, reason: str | None, role: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if self.kind == "chat":
            choice["delta"] = {"role": "assistant", "content": text} if role else ({"content": text} if text else {})
        else:
            choice["text"] = text
        return {"id": self.id, "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
                "created": self.created, "model": self.server.model_name, "choices": [choice]}

    def progress(self, row: dict) -> list[dict[str, Any]]:
        """A step's chunk: the newly final text, plus the canvas when `stream_canvas` asked for it."""
        new = self.text.delta(row["ids"])[0] if row["ids"] is not None else ""
        if not new and not self.job.stream_canvas:
            return []
        chunk = self.chunk(new, None)
        if self.job.stream_canvas:
            mask = self.server.model.mask_id
            chunk["dllm"] = {"canvas": [None if t == mask else t for t in row["canvas"]]}
        return [chunk]

    def last(self, answer: dict, submitted: float) -> list[dict[str, Any]]:
        text, reason, usage = self.finish(answer, submitted)
        chunks = [self.chunk(self.text.take(text), reason)]
        if self.job.include_usage:
            chunks.append({**self.chunk("", None), "choices": [], "usage": usage})
        return chunks

    @staticmethod
    def sse(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data)}\n\n"


def serve(server: Server, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run `server` under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(server.app(), host=host, port=port, log_level="warning")

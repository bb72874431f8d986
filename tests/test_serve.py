"""`dllm-decode serve`: real HTTP on a free loopback port, the official `openai` client, and every reply
checked against `Sampler(...).generate` for that request alone."""
from __future__ import annotations

import contextlib
import http.client
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra: pip install -e '.[serve]'")  # CI installs `test`, which has it
openai = pytest.importorskip("openai")

from dllm_decode import Sampler, load_model, wrap  # noqa: E402
from dllm_decode.cli import main  # noqa: E402
from dllm_decode.evals.tasks import make_samples  # noqa: E402
from dllm_decode.serve.app import Server  # noqa: E402
from dllm_decode.serve.background import running  # noqa: E402
from dllm_decode.serve.cohort import Cohort, fused_logits  # noqa: E402
from dllm_decode.serve.scheduler import QueueFull, Scheduler, Ticket  # noqa: E402
from dllm_decode.serve.schema import JobBuilder, RequestError  # noqa: E402
from dllm_decode.serve.stream import TextStream  # noqa: E402

from .conftest import EOS, MASK, tiny_dream_module, tiny_llada_module  # noqa: E402

NAME = "tiny-llada"


class Reply:
    """A raw HTTP reply (stdlib http.client: the tests need no HTTP client beyond `openai`)."""

    def __init__(self, status: int, text: str) -> None:
        self.status_code, self.text = status, text

    def json(self):
        return json.loads(self.text)


def request(url: str, path: str, content: str | bytes | None = None, method: str = "POST",
            headers: dict | None = None) -> Reply:
    host = url.split("//")[1]
    conn = http.client.HTTPConnection(host, timeout=60)
    body = json.dumps(content) if isinstance(content, (dict, list)) else content
    conn.request(method, path, body=body, headers={"content-type": "application/json", **(headers or {})})
    response = conn.getresponse()
    reply = Reply(response.status, response.read().decode())
    conn.close()
    return reply


@contextlib.contextmanager
def stream_lines(url: str, path: str, body: dict):
    """Yield an iterator over a streamed reply's lines; leaving the block closes the connection."""
    conn = http.client.HTTPConnection(url.split("//")[1], timeout=60)
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    response = conn.getresponse()
    try:
        yield (line.decode().rstrip("\n") for line in response)
    finally:
        conn.sock.close() if conn.sock else None
        conn.close()


@pytest.fixture(scope="module")
def model():
    return load_model(NAME)


@pytest.fixture(scope="module")
def prompts():
    return [s.prompt for s in make_samples("copy", per_length=3, lengths=(2, 3, 4, 5))]


@pytest.fixture(scope="module")
def server(model):
    srv = Server(model, NAME, "threshold", {})
    with running(srv) as url:
        yield srv, url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0, timeout=60)


def expected(model, prompt: str, max_tokens: int | None = None, sampler: str = "threshold", **options):
    """What `Sampler(...).generate` gives for this request alone: text, completion tokens, forwards."""
    if max_tokens is not None:
        block = Sampler(sampler, **options).fit(model, 1).decode.block_length
        options["gen_length"] = math.ceil(max_tokens / block) * block
    result = Sampler(sampler, **options).generate(model, prompt)
    ids = result.ids[0][:max_tokens] if max_tokens is not None else result.ids[0]
    return model.tokenizer.decode(ids, skip_special_tokens=True), len(ids), result.row_nfe[0]


def test_completion_equals_generate_with_usage(model, client, prompts):
    reply = client.completions.create(model=NAME, prompt=prompts[0])
    text, n, nfe = expected(model, prompts[0])
    assert reply.choices[0].text == text and reply.choices[0].finish_reason == "stop"
    usage = reply.usage.model_dump()
    assert (usage["completion_tokens"], usage["nfe"]) == (n, nfe)
    assert usage["prompt_tokens"] == len(model.tokenizer(prompts[0], add_special_tokens=False).input_ids)
    assert usage["tokens_per_forward"] == round(n / nfe, 3)


def test_chat_equals_generate_of_its_user_message(model, client, prompts):
    reply = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": prompts[1]}],
                                           extra_body={"dllm": {"sampler": "confidence", "block_length": 8}})
    assert reply.choices[0].message.content == expected(model, prompts[1], sampler="confidence", block_length=8)[0]
    assert reply.choices[0].message.role == "assistant"


def test_max_tokens_rounds_up_to_the_block_and_cuts_the_reply(model, client, prompts):
    reply = client.completions.create(model=NAME, prompt=prompts[2], max_tokens=5, extra_body={"dllm": {"block_length": 8}})
    text, n, nfe = expected(model, prompts[2], 5, block_length=8)
    assert (reply.choices[0].text, reply.usage.completion_tokens, reply.usage.model_dump()["nfe"]) == (text, n, nfe)
    assert n == 5 and reply.choices[0].finish_reason == "length"


def test_stop_cuts_the_reply_at_the_first_stop_string(model, client, prompts):
    full = expected(model, prompts[3])[0]
    stop = full.split()[2]
    reply = client.completions.create(model=NAME, prompt=prompts[3], stop=[stop])
    assert reply.choices[0].text == full[:full.index(stop)] and reply.choices[0].finish_reason == "stop"


ONE_PER_STEP = {"dllm": {"sampler": "confidence"}}  # one commit per step: the prefix grows over many chunks


@pytest.mark.parametrize("kind", ["completion", "chat"])
def test_streamed_chunks_join_to_the_unstreamed_reply(model, client, prompts, kind):
    if kind == "chat":
        chunks = list(client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": prompts[4]}], stream=True,
            stream_options={"include_usage": True}, extra_body=ONE_PER_STEP))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        chunks = list(client.completions.create(model=NAME, prompt=prompts[4], stream=True,
                                                stream_options={"include_usage": True}, extra_body=ONE_PER_STEP))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
    want, n, nfe = expected(model, prompts[4], sampler="confidence")
    assert text == want
    assert len([c for c in chunks if c.choices and (c.choices[0].model_dump().get("text") or
                                                     (c.choices[0].model_dump().get("delta") or {}).get("content"))]) > 1
    assert chunks[-1].usage.completion_tokens == n and chunks[-1].usage.model_dump()["nfe"] == nfe


def test_stream_canvas_sends_the_canvas_every_step(model, server, prompts):
    body = {"prompt": prompts[5], "stream": True, "dllm": {"sampler": "confidence", "stream_canvas": True}}
    with stream_lines(server[1], "/v1/completions", body) as lines:
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    canvases = [e["dllm"]["canvas"] for e in events if "dllm" in e]
    assert len(canvases) == 32  # confidence: one token per step on a 32-token canvas
    assert [sum(t is None for t in c) for c in canvases] == list(range(31, -1, -1))


BAD = [  # (body or raw text, status, a piece of the message)
    ("{not json", 400, "must be valid JSON"),
    ([1, 2], 400, "must be a JSON object"),
    ({"prompt": "copy", "top_k": 3}, 400, "unknown field(s) ['top_k']"),
    ({"prompt": "copy", "model": "gpt-4"}, 404, "`model` must be 'tiny-llada'"),
    ({"prompt": "copy", "n": 2}, 400, "`n` must be 1"),
    ({"prompt": "copy", "dllm": [1]}, 400, "`dllm` must be an object"),
    ({"prompt": "copy", "dllm": {"threshold": 1.5}}, 400, "`threshold` must be a number in (0, 1], got 1.5"),
    ({"prompt": "copy", "dllm": {"sampler": "nope"}}, 400, "nope"),
    ({"prompt": "copy", "dllm": {"thresh": 0.5}}, 400, "unknown option(s) ['thresh']"),
    ({"prompt": "copy", "dllm": {"gen_length": 8}}, 400, "`dllm.gen_length` is set through the request's `max_tokens`"),
    ({"prompt": "copy", "max_tokens": 0}, 400, "`max_tokens` must be a positive integer, got 0"),
    ({"prompt": "copy", "max_tokens": 200}, 400, "must be <= tiny-llada's context 128"),
    ({"prompt": list(range(1, 130))}, 400, "must leave room in tiny-llada's context (128 tokens)"),
    ({"prompt": [5, 100000]}, 400, "token ids must be in [0, 324)"),
    ({"prompt": ["a", "b"]}, 400, "one prompt per request"),
    ({"prompt": ""}, 400, "at least one token"),
    ({"prompt": "copy", "stop": ""}, 400, "`stop` must be a non-empty string"),
    ({"prompt": "copy", "stream": "yes"}, 400, "`stream` must be true or false"),
    ({"prompt": "copy", "temperature": -1}, 400, "`temperature` must be a number >= 0"),
    ({"prompt": "copy", "dllm": {"trace": True}}, 400, "`dllm.trace` is not served over HTTP"),
    ({"prompt": "copy", "dllm": {"chat_template": True}}, 400, "`dllm.chat_template` applies to"),
    ({"prompt": "copy", "stream_options": [1]}, 400, "`stream_options` must be an object"),
]
BAD_CHAT = [
    ({"messages": "hi"}, 400, "`messages` must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, 400, "has no chat template"),
]


@pytest.mark.parametrize("body,status,message", [(b, s, m, ) for b, s, m in BAD] +
                         [({**b, "_chat": 1}, s, m) for b, s, m in BAD_CHAT])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, model, prompts, body, status, message):
    path = "/v1/chat/completions" if isinstance(body, dict) and body.pop("_chat", None) else "/v1/completions"
    response = request(server[1], path, body if isinstance(body, str) else json.dumps(body))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["type"]
    ok = request(server[1], "/v1/completions", {"prompt": prompts[0]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == expected(model, prompts[0])[0]


def test_openai_client_raises_its_error_classes(client):
    with pytest.raises(openai.BadRequestError, match=r"`threshold` must be a number in \(0, 1\]"):
        client.completions.create(model=NAME, prompt="copy", extra_body={"dllm": {"threshold": 2}})
    with pytest.raises(openai.NotFoundError, match="`model` must be"):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "copy"}])


def run_mixed(model, client, prompts, count: int, workers: int) -> list[tuple]:
    """`count` requests over several configurations (some streamed, seeded, cached), `workers` at a time;
    returns (reply text, completion tokens, nfe, expected triple) per request."""
    configs = [(None, {}), (10, {"block_length": 8}), (None, {"sampler": "confidence", "block_length": 8}),
               (None, {"cache": "dual"}), (16, {"threshold": 0.6}), (None, {"temperature": 0.9, "seed": 5})]

    def one(i: int) -> tuple:
        max_tokens, dllm = configs[i % len(configs)]
        prompt = prompts[i % len(prompts)]
        extra = {"dllm": {k: v for k, v in dllm.items() if k not in ("temperature", "seed")}}
        sampling = {k: dllm[k] for k in ("temperature", "seed") if k in dllm}
        reply = client.completions.create(model=NAME, prompt=prompt, max_tokens=max_tokens, stream=i % 2 == 1,
                                          stream_options={"include_usage": True} if i % 2 else None,
                                          extra_body=extra, **sampling)
        if i % 2:
            chunks = list(reply)
            text, usage = "".join(c.choices[0].text for c in chunks if c.choices), chunks[-1].usage
        else:
            text, usage = reply.choices[0].text, reply.usage
        return text, usage.completion_tokens, usage.model_dump()["nfe"], (prompt, max_tokens, dllm)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def check_replies(model, replies) -> None:
    references: dict = {}
    for text, n, nfe, (prompt, max_tokens, dllm) in replies:
        options = {k: v for k, v in dllm.items() if k != "sampler"}
        key = (prompt, max_tokens, repr(sorted(dllm.items())))
        if key not in references:
            references[key] = expected(model, prompt, max_tokens, dllm.get("sampler", "threshold"), **options)
        assert (text, n, nfe) == references[key], (prompt, max_tokens, dllm)


def test_16_concurrent_requests_each_equal_their_one_by_one_output(model, server, client, prompts):
    before = server[0].metrics.forwards
    replies = run_mixed(model, client, prompts, 16, 16)
    check_replies(model, replies)
    served = server[0].metrics.forwards - before
    assert served < sum(nfe for _, _, nfe, _ in replies)  # requests shared forwards: they were batched


def test_load_64_requests_at_concurrency_16_stops_by_itself(model, client, prompts):
    start = time.perf_counter()
    replies = run_mixed(model, client, prompts, 64, 16)
    assert len(replies) == 64 and time.perf_counter() - start < 60
    check_replies(model, replies)


def test_client_disconnect_frees_its_row(server, prompts):
    srv, url = server
    before = srv.metrics.forwards
    body = {"prompt": [5] * 8, "max_tokens": 96, "stream": True,
            "dllm": {"sampler": "confidence", "stream_canvas": True, "cache": "prefix"}}  # 96 steps if left alone
    with stream_lines(url, "/v1/completions", body) as lines:
        for line in lines:
            if '"canvas"' in line:
                break
    deadline = time.time() + 20
    while srv.metrics.rows or srv.scheduler._cohorts:
        assert time.time() < deadline, "the abandoned row was never freed"
        time.sleep(0.02)
    assert srv.metrics.forwards - before < 96


def test_metrics_models_and_health(server, client, prompts):
    client.completions.create(model=NAME, prompt=prompts[0])
    text = request(server[1], "/metrics", method="GET").text
    for series in ('dllm_requests_total{endpoint="/v1/completions",status="200"}', "dllm_forwards_total",
                   "dllm_tokens_per_forward", "dllm_queue_depth", 'dllm_request_seconds_bucket{le="+Inf"}'):
        assert series in text
    assert [m.id for m in client.models.list()] == [NAME]
    assert request(server[1], "/health", method="GET").json() == {"status": "ok"}


def test_bounded_queue_answers_429_and_keeps_serving(model, prompts):
    srv = Server(model, NAME, "confidence", {"block_length": 8}, max_queue=1, max_rows=1)
    body = {"prompt": [5] * 8, "max_tokens": 96}  # 96 one-token steps: slow enough for a queue to build up
    with running(srv) as url, ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: request(url, "/v1/completions", body), range(8)))
        assert {r.status_code for r in codes} <= {200, 429} and any(r.status_code == 429 for r in codes)
        refused = next(r for r in codes if r.status_code == 429).json()["error"]
        assert refused["type"] == "rate_limit_error" and "retry later" in refused["message"]
        texts = {r.json()["choices"][0]["text"] for r in codes if r.status_code == 200}
        assert texts == {expected(model, torch.tensor([5] * 8), 96, "confidence", block_length=8)[0]}


def test_api_key_is_required_when_set(model, prompts):
    srv = Server(model, NAME, "threshold", {}, api_key="sesame")
    with running(srv) as url:
        with pytest.raises(openai.AuthenticationError, match="--api-key"):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=url + "/v1", api_key="sesame", max_retries=0)
        assert good.completions.create(model=NAME, prompt=prompts[0]).choices[0].text == expected(model, prompts[0])[0]


def step_cohorts(model, cohorts: list[Cohort]) -> None:
    """One step of every cohort, as the scheduler steps them: one fused forward for the shared ones."""
    live = [(c, p) for c in cohorts if c.shared for p in [c.pending()] if p is not None]
    if live:
        for (c, p), logits in zip(live, fused_logits(model, [c for c, _ in live], [p for _, p in live])):
            c.commit(p, logits)
    for c in cohorts:
        p = None if c.shared else c.pending()
        if p is not None:
            c.commit(p)  # its own forward(s): a cache's, WINO's shadow one, a speculative loop's several


@pytest.mark.parametrize("make", [tiny_llada_module, tiny_dream_module])
def test_cohorts_joining_a_shared_forward_mid_flight_equal_generate(make):
    """Deterministic (no HTTP): a cohort starts at each of the first four steps, with different samplers,
    canvases, a seeded hot one and a cached one; each equals `generate` of its prompts as one batch."""
    model = wrap(make(), mask_id=MASK, eos_ids=(EOS,))
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 90, (n,), generator=g) for n in (5, 11, 8, 3)]
    specs = [("threshold", {"gen_length": 32, "block_length": 8, "threshold": 0.5}),
             ("confidence", {"gen_length": 16, "block_length": 8}),
             ("confidence", {"gen_length": 32, "block_length": 8, "temperature": 1.0, "seed": 3}),
             ("threshold", {"gen_length": 32, "block_length": 8, "cache": "dual"})]
    samplers = [Sampler(name, **options).fit(model, 11) for name, options in specs]
    batches = [[prompts[i]] if i == 2 else [prompts[i], prompts[(i + 1) % 4]] for i in range(4)]  # seeded: alone
    cohorts: list[Cohort] = []
    with torch.no_grad():
        for step in range(100):
            if step < 4:
                cohorts.append(Cohort(model, samplers[step], batches[step], list(range(len(batches[step])))))
            step_cohorts(model, cohorts)
    assert [c.shared for c in cohorts] == [True, True, True, False]
    for sampler, batch, cohort in zip(samplers, batches, cohorts):
        done, ids, _, nfe = cohort.answers()
        reference = sampler.generate(model, batch)
        assert all(done) and ids == reference.ids and nfe == reference.row_nfe


def test_text_stream_holds_back_a_possible_stop_and_cuts_at_it():
    class Chars:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    text = TextStream(Chars(), mask_id=0, max_tokens=None, stop=("cd",))
    assert text.delta([ord("a"), ord("b"), ord("c"), 0]) == ("ab", False)  # "c" might start "cd"
    assert text.delta([ord("a"), ord("b"), ord("c"), ord("d")]) == ("", True)
    assert text.final([ord(c) for c in "abcde"]) == ("ab", 5, "stop")


def test_scheduler_refuses_beyond_its_queue_bound(model):
    job = JobBuilder(model, NAME, "threshold", {}).build({"prompt": "copy [ a ]"}, "completion")
    scheduler = Scheduler(model, server_metrics(), max_queue=1)  # not started: nothing leaves the queue
    scheduler.submit(Ticket(job, lambda *_: None))
    with pytest.raises(QueueFull, match="`--max-queue`"):
        scheduler.submit(Ticket(job, lambda *_: None))


def server_metrics():
    from dllm_decode.serve.metrics import Metrics

    return Metrics()


def test_chat_needs_a_tokenizer():
    bare = wrap(tiny_llada_module(), mask_id=MASK, eos_ids=(EOS,))
    with pytest.raises(RequestError, match="has no tokenizer"):
        JobBuilder(bare, "bare", "threshold", {}).build({"messages": [{"role": "user", "content": "x"}]}, "chat")


def test_cli_serve_checks_its_bounds(capsys):
    assert main(["serve", "--model", NAME, "--max-queue", "0"]) == 2
    assert "`--max-queue` must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`-o trace` is not served over HTTP"):
        JobBuilder(load_model(NAME), NAME, "threshold", {"trace": True})


def test_a_failing_cohort_fails_alone_and_the_scheduler_keeps_going():
    """A forward that raises for one request's rows: that request gets a 500-style error, a request decoded
    in the same shared forward still gets its one-by-one answer."""
    model = wrap(tiny_llada_module(), mask_id=MASK, eos_ids=(EOS,))
    original = model.module.forward

    def fragile(input_ids, **kwargs):
        if bool((input_ids[:, 0] == 42).any()):  # the bad prompt is the longest, so its first token leads its row
            raise RuntimeError("boom")
        return original(input_ids, **kwargs)

    options = {"gen_length": 16, "block_length": 8}
    builder = JobBuilder(model, "m", "threshold", options)
    jobs = {"good": builder.build({"prompt": [1, 2, 3], "dllm": {"threshold": 0.8}}, "completion"),
            "bad": builder.build({"prompt": [42] * 6}, "completion")}
    model.module.forward = fragile
    events: dict[str, list] = {"good": [], "bad": []}
    scheduler = Scheduler(model, server_metrics())
    for name, job in jobs.items():
        scheduler.submit(Ticket(job, lambda kind, payload, name=name: events[name].append((kind, payload))))
    scheduler.start()
    deadline = time.time() + 30
    while not all(e and e[-1][0] in ("done", "error") for e in events.values()):
        assert time.time() < deadline
        time.sleep(0.01)
    scheduler.stop()
    assert events["bad"][-1] == ("error", (500, "RuntimeError: boom"))
    reference = Sampler("threshold", threshold=0.8, **options).generate(model, torch.tensor([1, 2, 3]))
    assert events["good"][-1] == ("done", {"ids": reference.ids[0], "nfe": reference.row_nfe[0]})


def test_cli_serve_without_the_extra_names_the_install_command(monkeypatch, capsys):
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] in ("starlette", "uvicorn")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the serve extra were not installed
    monkeypatch.delitem(sys.modules, "dllm_decode.serve.app")
    assert main(["serve", "--model", NAME]) == 2
    assert 'needs the serve extra' in capsys.readouterr().err


@pytest.mark.parametrize("samplers", [("ssd", "threshold"), ("wino", "llada21", "threshold")])
@pytest.mark.parametrize("stream", [False, True])
def test_stepping_cohorts_beside_a_plain_request_equal_generate(model, client, prompts, stream, samplers):
    """Loops with several forwards per step (`ssd`) and the revising rules (WINO on its own shadow forward,
    LLaDA2.1 editing on the shared plain forward) step in cohorts beside a plain request, through the driver:
    text and `nfe` equal `generate` alone, streamed and not."""
    def one(name: str) -> tuple:
        reply = client.completions.create(model=NAME, prompt=prompts[6], stream=stream,
                                          stream_options={"include_usage": True} if stream else None,
                                          extra_body={"dllm": {"sampler": name}})
        if not stream:
            return reply.choices[0].text, reply.usage.model_dump()["nfe"]
        chunks = list(reply)
        return "".join(c.choices[0].text for c in chunks if c.choices), chunks[-1].usage.model_dump()["nfe"]

    with ThreadPoolExecutor(len(samplers)) as pool:
        replies = list(pool.map(one, samplers))
    for name, reply in zip(samplers, replies):
        want, _, want_nfe = expected(model, prompts[6], sampler=name)
        assert reply == (want, want_nfe), name


def test_revising_cohorts_equal_generate_and_stream_only_final_text(model, prompts):
    """Deterministic (no HTTP): LLaDA2.1 editing in the shared forward beside a plain cohort, WINO with its own
    shadow forward; each equals `generate` of its prompts in ids and per-row forwards, and the ids a decoding
    row reports are always a prefix of its final ids (a revision never changes text already streamed)."""
    specs = [("llada21", {"block_length": 8}), ("threshold", {"block_length": 8}), ("wino", {"block_length": 8})]
    samplers = [Sampler(name, **options).fit(model, 1) for name, options in specs]
    batches = [prompts[i:i + 2] for i in (0, 2, 4)]
    encoded = [[torch.tensor(model.tokenizer(p, add_special_tokens=False).input_ids) for p in b] for b in batches]
    cohorts = [Cohort(model, s, b, [0, 1]) for s, b in zip(samplers, encoded)]
    assert [c.shared for c in cohorts] == [True, True, False]
    reported: list[list[tuple[int, list[int]]]] = [[], [], []]  # per cohort: (row, ids) of decoding rows
    with torch.no_grad():
        while not all(bool(c.state.done.all()) for c in cohorts):
            step_cohorts(model, cohorts)
            for seen, cohort in zip(reported, cohorts):
                done, ids, _, _ = cohort.answers()
                # what the stream sends: the reported ids up to the first mask (`TextStream.delta`)
                seen.extend((row, ids[row][:(ids[row] + [model.mask_id]).index(model.mask_id)])
                            for row in range(len(ids)) if not done[row])
    for sampler, batch, cohort, seen in zip(samplers, batches, cohorts, reported):
        done, ids, _, nfe = cohort.answers()
        reference = sampler.generate(model, batch)
        assert all(done) and (ids, nfe) == (reference.ids, reference.row_nfe), sampler.name
        assert all(ids[row][:len(part)] == part for row, part in seen), sampler.name
    assert any(part for _, part in reported[0]), "LLaDA2.1's finished blocks stream before the request ends"


SPECULATIVE = [("ssd", "tiny-llada", {}), ("s2d2", "tiny-sdar", {}), ("deer", "tiny-ar", {"drafter": "tiny-deer-drafter"})]


@pytest.fixture(scope="module")
def zoo(model):
    return {"tiny-llada": model, "tiny-sdar": load_model("tiny-sdar"), "tiny-ar": load_model("tiny-ar")}


def test_speculative_cohorts_step_beside_a_plain_one_and_equal_generate(zoo, model, prompts):
    """Deterministic (no HTTP): ssd (LLaDA), s2d2 (SDAR, block diffusion) and deer (an AR target with its
    drafter) each step in a cohort of their own, one step per round beside a threshold cohort in the shared
    forward; each equals `generate` of its prompts in ids and per-row forwards, and the ids a decoding row
    reports are always a prefix of its final ids (committed, for deer verified, tokens are final)."""
    specs = [("threshold", "tiny-llada", {}), *SPECULATIVE]
    samplers = [Sampler(name, **options).fit(zoo[m], 1) for name, m, options in specs]
    batches = [prompts[i:i + 2] for i in (0, 2, 4, 6)]
    encoded = [[torch.tensor(zoo[m].tokenizer(p, add_special_tokens=False).input_ids) for p in b]
               for (_, m, _), b in zip(specs, batches)]
    cohorts = [Cohort(zoo[m], s, b, [0, 1]) for (_, m, _), s, b in zip(specs, samplers, encoded)]
    assert [c.shared for c in cohorts] == [True, False, False, False]
    reported: list[list[tuple[int, list[int]]]] = [[] for _ in cohorts]  # per cohort: (row, ids) of decoding rows
    rounds = 0
    with torch.no_grad():
        while not all(bool(c.state.done.all()) for c in cohorts):
            step_cohorts(model, cohorts)
            rounds += 1
            for seen, cohort, (_, m, _) in zip(reported, cohorts, specs):
                done, ids, _, _ = cohort.answers()
                mask = zoo[m].mask_id
                seen.extend((row, ids[row][:(ids[row] + [mask]).index(mask)])
                            for row in range(len(ids)) if not done[row])
    steps = [c.state.step for c in cohorts]
    assert rounds == max(steps) and all(s > 1 for s in steps), steps  # stepped round by round, none run whole
    for (name, m, _), sampler, batch, cohort, seen in zip(specs, samplers, batches, cohorts, reported):
        done, ids, _, nfe = cohort.answers()
        reference = sampler.generate(zoo[m], batch)
        assert all(done) and (ids, nfe) == (reference.ids, reference.row_nfe), name
        assert all(ids[row][:len(part)] == part for row, part in seen), name
    assert any(part for _, part in reported[3]), "deer's verified prefix streams before the request ends"


def test_uniform_has_no_driver_and_runs_whole_equal_to_generate():
    """DiffusionGemma's uniform-noise loop has no driver: the scheduler runs it whole through `generate`, and
    its answer equals `generate` alone; every driver loop is steppable."""
    pytest.importorskip("transformers.models.diffusion_gemma")
    from dllm_decode.models.diffusion_gemma import wrap_diffusion_gemma
    from dllm_decode.serve.cohort import steppable

    from .test_diffusion_gemma import EOS as GEMMA_EOS, tiny_diffusion_gemma

    module = tiny_diffusion_gemma()
    module.generation_config.max_denoising_steps = 6
    model = wrap_diffusion_gemma(module, eos_ids=(GEMMA_EOS,))
    options = {"loop": "uniform", "gen_length": 16, "seed": 11}
    assert not steppable(Sampler("eb", **options).fit(model, 5))
    assert all(steppable(Sampler(name).fit(load_model(NAME), 5)) for name in ("threshold", "wino", "ssd"))
    job = JobBuilder(model, "m", "eb", options).build({"prompt": [5, 6, 7, 8, 9]}, "completion")
    events: list = []
    scheduler = Scheduler(model, server_metrics())
    scheduler.submit(Ticket(job, lambda kind, payload: events.append((kind, payload))))
    scheduler.start()
    deadline = time.time() + 30
    while not (events and events[-1][0] in ("done", "error")):
        assert time.time() < deadline
        time.sleep(0.01)
    scheduler.stop()
    reference = Sampler("eb", **options).generate(model, torch.tensor([5, 6, 7, 8, 9]))
    assert events == [("done", {"ids": reference.ids[0], "nfe": reference.row_nfe[0]})]


@pytest.mark.parametrize("name, model_name, options", SPECULATIVE)
def test_a_speculative_row_leaving_mid_flight_leaves_its_neighbour_as_if_alone(zoo, prompts, name, model_name,
                                                                                  options):
    """A client that goes away after the first step: its row stops, the other row of the cohort still equals
    `generate` of its prompt alone in ids and forwards."""
    model = zoo[model_name]
    sampler = Sampler(name, **options).fit(model, 1)
    encoded = [torch.tensor(model.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts[3:5]]
    cohort = Cohort(model, sampler, encoded, [0, 1])
    with torch.no_grad():
        cohort.commit(cohort.pending())
        first = int(cohort.state.row_nfe[0])  # ssd and s2d2 take two forwards in a step, deer one (target)
        cohort.leave(0)
        while (step := cohort.pending()) is not None:
            cohort.commit(step)
    done, ids, _, nfe = cohort.answers()
    reference = sampler.generate(model, prompts[4])
    assert (ids[1], nfe[1]) == (reference.ids[0], reference.row_nfe[0])
    assert nfe[0] == first and nfe[1] > first, "the row that left took no forward after it left"

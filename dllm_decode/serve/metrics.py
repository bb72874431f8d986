"""Prometheus text exposition of the server's counters (no client library needed for a handful of series)."""
from __future__ import annotations

import threading

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds, request latency


class Metrics:
    """Counters shared by the event loop and the scheduler thread, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}  # (endpoint, HTTP status) -> count
        self.prompt_tokens = self.completion_tokens = self.generated_tokens = self.request_forwards = 0
        self.forwards = 0  # forwards the server ran (a shared forward of many cohorts counts once)
        self.queue = self.rows = 0
        self.latency = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0

    def add_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1

    def add_answer(self, prompt: int, completion: int, generated: int, nfe: int, seconds: float) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.generated_tokens += generated
            self.request_forwards += nfe
            self.latency[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
            self.latency_sum += seconds

    def add_forwards(self, n: int) -> None:
        with self._lock:
            self.forwards += n

    def set_queue(self, n: int) -> None:
        self.queue = n

    def set_rows(self, n: int) -> None:
        self.rows = n

    def render(self) -> str:
        with self._lock:
            lines = ["# TYPE dllm_requests_total counter"]
            lines += [f'dllm_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            for name, value, kind, doc in (
                    ("prompt_tokens_total", self.prompt_tokens, "counter", "prompt tokens of answered requests"),
                    ("completion_tokens_total", self.completion_tokens, "counter", "tokens returned (after max_tokens/stop)"),
                    ("generated_tokens_total", self.generated_tokens, "counter", "tokens decoded before the first EOS"),
                    ("forwards_total", self.forwards, "counter", "model forwards run (a shared forward counts once)"),
                    ("tokens_per_forward", self.generated_tokens / max(self.request_forwards, 1), "gauge",
                     "generated tokens / forwards each request took part in (the library's TPF)"),
                    ("queue_depth", self.queue, "gauge", "requests waiting for a row"),
                    ("rows_in_flight", self.rows, "gauge", "requests being decoded")):
                lines += [f"# HELP dllm_{name} {doc}", f"# TYPE dllm_{name} {kind}", f"dllm_{name} {value}"]
            lines.append("# TYPE dllm_request_seconds histogram")
            total = 0
            for bound, count in zip((*BUCKETS, "+Inf"), self.latency):
                total += count
                lines.append(f'dllm_request_seconds_bucket{{le="{bound}"}} {total}')
            lines += [f"dllm_request_seconds_sum {self.latency_sum:.6f}", f"dllm_request_seconds_count {total}"]
        return "\n".join(lines) + "\n"

"""A server on a free loopback port in a background thread: for tests, benchmarks and notebooks."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import uvicorn

from .app import Server


@contextlib.contextmanager
def running(server: Server, timeout: float = 20.0) -> Iterator[str]:
    """Serve `server` under uvicorn on a free 127.0.0.1 port and yield its base URL ("http://127.0.0.1:PORT");
    stop it on exit. Raises RuntimeError when it has not started within `timeout` seconds."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(server.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + timeout
    while not uv.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server on 127.0.0.1:{port} did not start within {timeout} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=timeout)

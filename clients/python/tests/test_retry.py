"""429 is retried after its Retry-After, up to `max_retries`, against a local fake service (the
real one answers 429 only when it is full, which a test cannot hold steady)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

import execbox

RESULT = {
    "id": "r1",
    "status": "ok",
    "exit_code": 0,
    "signal": None,
    "stdout": "hi\n",
    "stderr": "",
    "stdout_truncated": False,
    "stderr_truncated": False,
    "usage": {"wall_time_ms": 1, "cpu_time_ms": 1, "peak_memory_bytes": 1},
    "compile": None,
    "executor": "local",
    "policy": "default",
    "language": "python",
    "runtime_version": "Python 3.11.2",
}


class Fake:
    """Answers the first `busy` requests 429 with `Retry-After: <retry_after>`, then 200."""

    def __init__(self, busy: int, retry_after: str) -> None:
        self.busy = busy
        self.times: list[float] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                fake.times.append(time.monotonic())
                if len(fake.times) <= fake.busy:
                    status, body = 429, {"error": {"code": "over_capacity", "message": "full"}}
                else:
                    status, body = 200, RESULT
                data = json.dumps(body).encode()
                events = status == 200 and "text/event-stream" in self.headers.get("accept", "")
                if events:
                    out = json.dumps({"data": "hi\n"})
                    data = f"event: stdout\ndata: {out}\n\nevent: result\ndata: {data.decode()}\n\n".encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("retry-after", retry_after)
                self.send_header("content-type", "text/event-stream" if events else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[Fake]:
    busy, retry_after = request.param
    f = Fake(busy, retry_after)
    yield f
    f.server.shutdown()
    f.server.server_close()


@pytest.mark.parametrize("fake", [(2, "1")], indirect=True)
def test_a_429_is_retried_after_retry_after(fake: Fake) -> None:
    with execbox.Client(fake.url, max_retries=3) as c:
        r = c.execute("python", "print('hi')")
    assert (r.status, r.stdout) == ("ok", "hi\n")
    assert len(fake.times) == 3
    assert all(0.95 <= g < 3.0 for g in fake.gaps()), fake.gaps()


@pytest.mark.parametrize("fake", [(2, "1")], indirect=True)
def test_a_429_is_retried_by_the_async_client(fake: Fake) -> None:
    async def go() -> execbox.ExecuteResult:
        async with execbox.AsyncClient(fake.url, max_retries=3) as c:
            return await c.execute("python", "print('hi')")

    r = asyncio.run(go())
    assert r.stdout == "hi\n"
    assert len(fake.times) == 3
    assert all(0.95 <= g < 3.0 for g in fake.gaps()), fake.gaps()


@pytest.mark.parametrize("fake", [(5, "1")], indirect=True)
def test_past_max_retries_the_429_is_raised_with_its_code(fake: Fake) -> None:
    with execbox.Client(fake.url, max_retries=1) as c:
        with pytest.raises(execbox.OverCapacity) as e:
            c.execute("python", "print('hi')")
    assert (e.value.status, e.value.code, e.value.message, e.value.retry_after) == (429, "over_capacity", "full", 1.0)
    assert len(fake.times) == 2


@pytest.mark.parametrize("fake", [(1, "0")], indirect=True)
def test_a_streamed_run_is_retried_too(fake: Fake) -> None:
    with execbox.Client(fake.url, max_retries=2) as c:
        events = list(c.execute_stream("python", "print('hi')"))
    assert len(fake.times) == 2
    assert events[0] == execbox.OutputEvent("stdout", "hi\n")
    assert isinstance(events[1], execbox.ResultEvent) and events[1].result.stdout == "hi\n"
    assert len(events) == 2

"""One-shot runs, streamed runs, batches and errors, through both clients against the real
service."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import execbox

PROGRAM = "import os, sys\nprint(input().upper(), sys.argv[1:], os.environ['GREETING'])\nprint(open('data.txt').read(), end='')\nsys.exit(3)"
TICKS = 'for i in 1 2 3; do echo "tick $i"; sleep 0.3; done; echo done >&2'


def check_program_result(r: execbox.ExecuteResult) -> None:
    assert r.status == "error"
    assert r.exit_code == 3
    assert r.signal is None
    assert r.stdout == "FROM STDIN ['a', 'b'] hello\nfile\n"
    assert r.stderr == ""
    assert (r.stdout_truncated, r.stderr_truncated) == (False, False)
    assert (r.language, r.executor, r.policy, r.compile) == ("python", "local", "default", None)
    assert r.runtime_version.startswith("Python 3.")
    assert r.usage.wall_time_ms > 0 and r.usage.peak_memory_bytes > 0
    assert r.raw["id"] == r.id


def test_execute(client: execbox.Client) -> None:
    r = client.execute(
        "python",
        PROGRAM,
        stdin="from stdin\n",
        args=["a", "b"],
        env={"GREETING": "hello"},
        files={"data.txt": b"file\n"},
    )
    check_program_result(r)


def test_a_compile_error_is_a_status(client: execbox.Client) -> None:
    r = client.execute("c", "int main( {")
    assert r.status == "compile_error"
    assert r.exit_code is None
    assert r.compile is not None and r.compile.status == "error" and r.compile.exit_code == 1
    assert "error" in r.compile.stderr


def test_a_limit_is_a_status(client: execbox.Client) -> None:
    r = client.execute("python", "while True: pass", limits={"cpu_time_ms": 300})
    assert (r.status, r.signal) == ("cpu_limit", "SIGKILL")


def check_ticks(events: list[execbox.StreamEvent], times: list[float]) -> None:
    outputs = [e for e in events if isinstance(e, execbox.OutputEvent)]
    assert "".join(e.data for e in outputs if e.stream == "stdout") == "tick 1\ntick 2\ntick 3\n"
    assert "".join(e.data for e in outputs if e.stream == "stderr") == "done\n"
    assert isinstance(events[-1], execbox.ResultEvent)
    assert [isinstance(e, execbox.ResultEvent) for e in events].count(True) == 1
    result = events[-1].result
    assert (result.status, result.stdout, result.stderr) == ("ok", "tick 1\ntick 2\ntick 3\n", "done\n")
    # Streamed as the program wrote it: the first tick came well before the end.
    assert times[-1] - times[0] >= 0.5, times


def test_execute_stream(client: execbox.Client) -> None:
    events, times = [], []
    for ev in client.execute_stream("bash", TICKS):
        events.append(ev)
        times.append(time.monotonic())
    check_ticks(events, times)


def test_closing_a_stream_cancels_the_run(client: execbox.Client, audit: Any) -> None:
    code = f"import time\nprint('started', flush=True)\ntime.sleep(30)\n# {time.time()}"
    stream = client.execute_stream("python", code)
    first = next(stream)
    assert isinstance(first, execbox.OutputEvent) and first.data.startswith("started")
    stream.close()  # type: ignore[attr-defined]
    status = None
    for _ in range(100):
        rows = audit("SELECT status FROM runs WHERE code = ?", code)
        if rows:
            status = rows[0][0]
            break
        time.sleep(0.1)
    assert status == "cancelled"


def test_execute_batch(client: execbox.Client) -> None:
    items = client.execute_batch(
        [
            {"language": "python", "code": "print(1)"},
            {"language": "cobol", "code": ""},
            {"language": "bash", "code": "read x; echo $x; exit 4", "stdin": "in\n"},
        ],
        concurrency=2,
    )
    assert len(items) == 3
    first, second, third = items
    assert isinstance(first, execbox.ExecuteResult) and (first.status, first.stdout) == ("ok", "1\n")
    assert isinstance(second, execbox.BadRequest)
    assert (second.code, second.status) == ("unknown_language", None)
    assert isinstance(third, execbox.ExecuteResult) and (third.exit_code, third.stdout) == (4, "in\n")


def test_errors_raise_the_class_of_their_code(client: execbox.Client, service: dict[str, str]) -> None:
    with pytest.raises(execbox.BadRequest) as e:
        client.execute("cobol", "")
    assert (e.value.status, e.value.code) == (400, "unknown_language")
    assert "python" in e.value.message

    with pytest.raises(execbox.UnprocessableEntity) as e:
        client.execute("python", "", limits={"wall_time_ms": 10**9})
    assert (e.value.status, e.value.code) == (422, "limit_exceeded")

    with pytest.raises(execbox.NotFound) as e:
        client.sandboxes.get("sb_" + "0" * 32)
    assert (e.value.status, e.value.code) == (404, "sandbox_not_found")

    # Refused before a stream starts: the ordinary error, raised on iterating.
    with pytest.raises(execbox.BadRequest) as e:
        list(client.execute_stream("cobol", ""))
    assert e.value.code == "unknown_language"

    with execbox.Client(service["url"], "exb_" + "0" * 64) as wrong:
        with pytest.raises(execbox.Unauthorized) as e:
            wrong.execute("python", "print(1)")
    assert (e.value.status, e.value.code) == (401, "unauthorized")


def test_the_async_client(aclient_args: tuple[str, str]) -> None:
    async def go() -> None:
        async with execbox.AsyncClient(*aclient_args) as c:
            r = await c.execute(
                "python",
                PROGRAM,
                stdin="from stdin\n",
                args=["a", "b"],
                env={"GREETING": "hello"},
                files={"data.txt": "file\n"},
            )
            check_program_result(r)

            events, times = [], []
            async for ev in c.execute_stream("bash", TICKS):
                events.append(ev)
                times.append(time.monotonic())
            check_ticks(events, times)

            items = await c.execute_batch([{"language": "bash", "code": "echo $0 x"}, {"language": "cobol", "code": ""}])
            assert isinstance(items[0], execbox.ExecuteResult) and items[0].stdout.endswith(" x\n")
            assert isinstance(items[1], execbox.BadRequest) and items[1].code == "unknown_language"

            with pytest.raises(execbox.NotFound) as e:
                await c.sandboxes.get("sb_" + "0" * 32)
            assert e.value.code == "sandbox_not_found"
            with pytest.raises(execbox.BadRequest) as e2:
                async for _ in c.execute_stream("cobol", ""):
                    pass
            assert e2.value.code == "unknown_language"

            runtimes = {rt["language"] for rt in await c.runtimes()}
            assert {"python", "bash", "c"} <= runtimes

    asyncio.run(go())

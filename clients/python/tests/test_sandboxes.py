"""Sandboxes through both clients: calls, files, archives, contexts, background processes,
keepalive, delete, and the context manager that deletes."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from datetime import datetime

import pytest

import execbox

CALC = "def add(a, b):\n    return a + b\n"
USES_CALC = "from lib.calc import add\nprint(add(2, 3))\nopen('out.txt', 'w').write('kept\\n')"
# A later call reaches the background server over the sandbox's loopback.
FETCH = """import time, urllib.request
for _ in range(100):
    try:
        print(urllib.request.urlopen('http://127.0.0.1:8000/out.txt').read().decode(), end='')
        break
    except OSError:
        time.sleep(0.1)
"""


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def members(tar: bytes) -> dict[str, bytes]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        for m in t.getmembers():
            if m.isfile():
                f = t.extractfile(m)
                assert f is not None
                out[m.name.removeprefix("./")] = f.read()
    return out


def seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_a_sandbox_keeps_its_files_contexts_and_processes(client: execbox.Client) -> None:
    with client.sandboxes.create(ttl_seconds=600, metadata={"suite": "sdk-sync"}) as sb:
        assert sb.id.startswith("sb_")
        assert (sb.info.executor, sb.info.policy, sb.info.state) == ("local", "default", "running")
        assert sb.info.metadata == {"suite": "sdk-sync"}
        assert [s.id for s in client.sandboxes.list(metadata={"suite": "sdk-sync"})] == [sb.id]

        assert sb.files.write("lib/calc.py", CALC) == execbox.FileInfo("lib/calc.py", "utf-8", 32)
        sb.files.write("raw.bin", b"\x00\x01\xff")
        r = sb.execute("python", USES_CALC)
        assert (r.status, r.stdout) == ("ok", "5\n")
        assert sb.files.read("out.txt") == b"kept\n"
        assert sb.files.read("raw.bin") == b"\x00\x01\xff"

        listing = {f.path: (f.type, f.size) for f in sb.files.list()}
        assert listing["lib"] == ("dir", 0)
        assert listing["lib/calc.py"] == ("file", 32)
        assert listing["out.txt"] == ("file", 5)
        assert listing["raw.bin"] == ("file", 3)
        assert {f.path for f in sb.files.list("lib") if f.type == "file"} >= {"lib/calc.py"}
        assert all(f.path.startswith("lib/") for f in sb.files.list("lib"))

        archived = members(sb.archive())
        assert archived["out.txt"] == b"kept\n"
        assert archived["lib/calc.py"] == CALC.encode()
        sb.upload_archive(tar_of({"up/x.txt": b"from a tar\n"}))
        assert sb.files.read("up/x.txt") == b"from a tar\n"

        with pytest.raises(execbox.NotFound) as e:
            sb.files.read("missing.txt")
        assert e.value.code == "file_not_found"

        ctx = sb.contexts.create()
        assert ctx.id.startswith("ctx_") and ctx.info.state == "idle"
        assert ctx.execute("x = 20").status == "ok"
        r = ctx.execute("x += 1\nprint(x)\nx * 2")
        assert (r.status, r.stdout, r.results, r.error) == ("ok", "21\n", [{"text/plain": "42"}], None)
        r = sb.execute("python", "print(x)", context=ctx.id)
        assert r.stdout == "21\n"
        r = ctx.execute("1 / 0")
        assert r.status == "error"
        assert r.error is not None and (r.error.name, r.error.value) == ("ZeroDivisionError", "division by zero")
        assert [c.id for c in sb.contexts.list()] == [ctx.id]
        ctx.delete()
        assert sb.contexts.list() == []

        proc = sb.processes.start(["python3", "-m", "http.server", "8000"])
        assert proc.id.startswith("proc_")
        assert (proc.info.state, proc.info.command) == ("running", ["python3", "-m", "http.server", "8000"])
        r = sb.execute("python", FETCH)
        assert r.stdout == "kept\n"
        assert proc.logs().process is not None and proc.info.state == "running"
        assert "GET /out.txt" in proc.logs().stderr
        assert [p.id for p in sb.processes.list()] == [proc.id]
        proc.kill()

        shell = sb.processes.start("echo from sh; exit 7")
        for _ in range(100):
            if shell.logs().process is not None and shell.info.state == "exited":
                break
            time.sleep(0.05)
        assert (shell.info.state, shell.info.exit_code) == ("exited", 7)
        assert shell.logs().stdout == "from sh\n"

        before = seconds(sb.info.expires_at)
        info = sb.keepalive(ttl_seconds=1200)
        assert seconds(info.expires_at) - before >= 599
        assert sb.refresh().expires_at == info.expires_at
        sandbox_id = sb.id

    with pytest.raises(execbox.NotFound) as e:
        client.sandboxes.get(sandbox_id)
    assert e.value.code == "sandbox_not_found"


def test_delete(client: execbox.Client) -> None:
    sb = client.sandboxes.create(ttl_seconds=60)
    assert client.sandboxes.get(sb.id).id == sb.id
    sb.delete()
    with pytest.raises(execbox.NotFound) as e:
        sb.execute("python", "print(1)")
    assert (e.value.status, e.value.code) == (404, "sandbox_not_found")


def test_the_async_sandbox(aclient_args: tuple[str, str]) -> None:
    async def go() -> str:
        async with execbox.AsyncClient(*aclient_args) as c:
            async with c.sandboxes.create(ttl_seconds=600) as sb:
                await sb.files.write("lib/calc.py", CALC)
                r = await sb.execute("python", USES_CALC)
                assert r.stdout == "5\n"
                assert await sb.files.read("out.txt") == b"kept\n"
                paths = {f.path for f in await sb.files.list()}
                assert {"lib/calc.py", "out.txt", "main.py"} <= paths
                assert members(await sb.archive())["out.txt"] == b"kept\n"

                ctx = await sb.contexts.create()
                await ctx.execute("import math\ny = math.factorial(5)")
                events = [ev async for ev in ctx.execute_stream("print(y)")]
                out = [ev for ev in events if isinstance(ev, execbox.OutputEvent)]
                assert "".join(ev.data for ev in out) == "120\n" and {ev.stream for ev in out} == {"stdout"}
                assert isinstance(events[-1], execbox.ResultEvent) and events[-1].result.stdout == "120\n"

                proc = await sb.processes.start(["python3", "-m", "http.server", "8000"])
                assert (await sb.execute("python", FETCH)).stdout == "kept\n"
                await proc.kill()

                before = seconds(sb.info.expires_at)
                assert seconds((await sb.keepalive(ttl_seconds=1200)).expires_at) - before >= 599

                # Awaited without `async with`: deleted by hand.
                other = await c.sandboxes.create(ttl_seconds=60)
                await other.delete()
                with pytest.raises(execbox.NotFound):
                    await c.sandboxes.get(other.id)
                sandbox_id = sb.id
            with pytest.raises(execbox.NotFound) as e:
                await c.sandboxes.get(sandbox_id)
            assert e.value.code == "sandbox_not_found"
            return sandbox_id

    asyncio.run(go())

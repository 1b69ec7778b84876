"""The asyncio client: `_sync.py`'s surface with `await` (tests/test_surface.py holds the two
equal). Every request is built in `_core`, as for the blocking client."""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Mapping, Optional, Sequence, TypeVar, Union

import httpx

from . import _core as core
from . import _models as m
from ._errors import NotFound

T = TypeVar("T")


class _AsyncTransport:
    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        timeout: Union[float, httpx.Timeout, None],
        max_retries: int,
        http_client: Optional[httpx.AsyncClient],
    ) -> None:
        self.max_retries = max_retries
        self._owned = http_client is None
        self.http = http_client or httpx.AsyncClient(timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.headers = core.headers(api_key)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Request:
        extra = kw.pop("headers", None) or {}
        return self.http.build_request(
            method, self.base_url + path, headers={**self.headers, **extra}, **kw
        )

    async def _send(self, build: Callable[[], httpx.Request], stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            resp = await self.http.send(build(), stream=stream)
            wait = core.retry_wait(resp, attempt, self.max_retries)
            if wait is None:
                break
            await resp.aclose()
            await asyncio.sleep(wait)
            attempt += 1
        if resp.is_error:
            await resp.aread()
            await resp.aclose()
            raise core.api_error(resp)
        return resp

    async def call(self, c: core.Call[T]) -> T:
        resp = await self._send(
            lambda: self._request(
                c.method, c.path, json=c.json, params=c.params, content=c.content, headers=c.headers
            )
        )
        return c.parse(resp)

    async def stream(self, c: core.StreamCall[T]) -> AsyncIterator[T]:
        resp = await self._send(
            lambda: self._request(
                c.method,
                c.path,
                json=c.json,
                params=c.params,
                headers={"accept": "text/event-stream"},
            ),
            stream=True,
        )
        decoder = core.SSEDecoder()
        try:
            async for line in resp.aiter_lines():
                ev = decoder.feed(line)
                if ev is None:
                    continue
                item = c.on_event(*ev)
                if item is not None:
                    yield item
        finally:
            await resp.aclose()

    async def close(self) -> None:
        if self._owned:
            await self.http.aclose()


class AsyncClient:
    """`Client` for asyncio: the same methods, awaited; streams are async iterators."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        *,
        timeout: Union[float, httpx.Timeout, None] = core.DEFAULT_TIMEOUT,
        max_retries: int = 3,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(core.API_KEY_ENV)
        self._t = _AsyncTransport(base_url, key, timeout, max_retries, http_client)
        self.sandboxes = AsyncSandboxes(self._t)
        self.agent_runs = AsyncAgentRuns(self._t)

    async def execute(
        self,
        language: str,
        code: str,
        *,
        stdin: Optional[str] = None,
        files: Optional[core.Files] = None,
        args: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        limits: Optional[Mapping[str, int]] = None,
        executor: Optional[str] = None,
        policy: Optional[str] = None,
    ) -> m.ExecuteResult:
        body = core.run_body(language, code, stdin, files, args, env, limits, executor, policy)
        return await self._t.call(core.execute(body))

    def execute_stream(
        self,
        language: str,
        code: str,
        *,
        stdin: Optional[str] = None,
        files: Optional[core.Files] = None,
        args: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        limits: Optional[Mapping[str, int]] = None,
        executor: Optional[str] = None,
        policy: Optional[str] = None,
    ) -> AsyncIterator[m.StreamEvent]:
        body = core.run_body(language, code, stdin, files, args, env, limits, executor, policy)
        return self._t.stream(core.execute_stream(body))

    async def execute_batch(
        self, requests: Sequence[Mapping[str, Any]], *, concurrency: Optional[int] = None
    ) -> list[m.BatchItem]:
        return await self._t.call(core.execute_batch(requests, concurrency))

    async def runtimes(self) -> list[dict[str, Any]]:
        return await self._t.call(core.runtimes())

    async def policies(self) -> list[dict[str, Any]]:
        return await self._t.call(core.policies())

    async def close(self) -> None:
        await self._t.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()


class _Creating:
    """What `AsyncSandboxes.create` returns: await it for the sandbox, or use it in
    `async with` to have the sandbox deleted on exit."""

    def __init__(self, make: Callable[[], Awaitable["AsyncSandbox"]]) -> None:
        self._make = make
        self._sandbox: Optional[AsyncSandbox] = None

    def __await__(self) -> Generator[Any, None, "AsyncSandbox"]:
        return self._make().__await__()

    async def __aenter__(self) -> "AsyncSandbox":
        self._sandbox = await self._make()
        return self._sandbox

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._sandbox is not None:
            await self._sandbox.__aexit__(exc_type, exc, tb)


class AsyncSandboxes:
    def __init__(self, t: _AsyncTransport) -> None:
        self._t = t

    def create(
        self,
        ttl_seconds: int = 3600,
        *,
        executor: Optional[str] = None,
        policy: Optional[str] = None,
        idle_timeout_seconds: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> _Creating:
        """`await` it, or `async with client.sandboxes.create(...) as sandbox:`."""

        async def make() -> AsyncSandbox:
            info = await self._t.call(
                core.create_sandbox(ttl_seconds, executor, policy, idle_timeout_seconds, env, metadata)
            )
            return AsyncSandbox(self._t, info)

        return _Creating(make)

    async def get(self, sandbox_id: str) -> "AsyncSandbox":
        return AsyncSandbox(self._t, await self._t.call(core.get_sandbox(sandbox_id)))

    async def list(self, metadata: Optional[Mapping[str, str]] = None) -> "list[AsyncSandbox]":
        return [AsyncSandbox(self._t, i) for i in await self._t.call(core.list_sandboxes(metadata))]


class AsyncSandbox:
    def __init__(self, t: _AsyncTransport, info: m.SandboxInfo) -> None:
        self._t = t
        self.info = info
        self.id = info.id
        self.files = AsyncFiles(t, self.id)
        self.contexts = AsyncContexts(t, self.id)
        self.processes = AsyncProcesses(t, self.id)

    def __repr__(self) -> str:
        return f"AsyncSandbox({self.id!r})"

    async def execute(
        self,
        language: str,
        code: str,
        *,
        stdin: Optional[str] = None,
        files: Optional[core.Files] = None,
        args: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        limits: Optional[Mapping[str, int]] = None,
        context: Optional[str] = None,
    ) -> m.ExecuteResult:
        body = core.run_body(language, code, stdin, files, args, env, limits, context=context)
        return await self._t.call(core.execute(body, core.call_path(self.id)))

    def execute_stream(
        self,
        language: str,
        code: str,
        *,
        stdin: Optional[str] = None,
        files: Optional[core.Files] = None,
        args: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        limits: Optional[Mapping[str, int]] = None,
        context: Optional[str] = None,
    ) -> AsyncIterator[m.StreamEvent]:
        body = core.run_body(language, code, stdin, files, args, env, limits, context=context)
        return self._t.stream(core.execute_stream(body, core.call_path(self.id)))

    async def archive(self) -> bytes:
        return await self._t.call(core.download_archive(self.id))

    async def upload_archive(self, tar: bytes) -> None:
        await self._t.call(core.upload_archive(self.id, tar))

    async def keepalive(self, ttl_seconds: Optional[int] = None) -> m.SandboxInfo:
        self.info = await self._t.call(core.keepalive(self.id, ttl_seconds))
        return self.info

    async def refresh(self) -> m.SandboxInfo:
        self.info = await self._t.call(core.get_sandbox(self.id))
        return self.info

    async def delete(self) -> None:
        await self._t.call(core.delete_sandbox(self.id))

    async def __aenter__(self) -> "AsyncSandbox":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            await self.delete()
        except NotFound:
            pass


class AsyncFiles:
    def __init__(self, t: _AsyncTransport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    async def write(
        self, path: str, data: Union[str, bytes], *, path_encoding: Optional[str] = None
    ) -> m.FileInfo:
        return await self._t.call(core.write_file(self._id, path, data, path_encoding))

    async def read(self, path: str, *, path_encoding: Optional[str] = None) -> bytes:
        return await self._t.call(core.read_file(self._id, path, path_encoding))

    async def list(
        self, path: Optional[str] = None, *, path_encoding: Optional[str] = None
    ) -> "list[m.FileInfo]":
        return await self._t.call(core.list_files(self._id, path, path_encoding))


class AsyncContexts:
    def __init__(self, t: _AsyncTransport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    async def create(self, language: str = "python") -> "AsyncContext":
        info = await self._t.call(core.create_context(self._id, language))
        return AsyncContext(self._t, self._id, info)

    async def list(self) -> "list[m.ContextInfo]":
        return await self._t.call(core.list_contexts(self._id))

    async def delete(self, context_id: str) -> None:
        await self._t.call(core.delete_context(self._id, context_id))


class AsyncContext:
    def __init__(self, t: _AsyncTransport, sandbox_id: str, info: m.ContextInfo) -> None:
        self._t = t
        self._sandbox_id = sandbox_id
        self.info = info
        self.id = info.id

    def __repr__(self) -> str:
        return f"AsyncContext({self.id!r})"

    async def execute(self, code: str, *, limits: Optional[Mapping[str, int]] = None) -> m.ExecuteResult:
        body = core.run_body(self.info.language, code, limits=limits, context=self.id)
        return await self._t.call(core.execute(body, core.call_path(self._sandbox_id)))

    def execute_stream(
        self, code: str, *, limits: Optional[Mapping[str, int]] = None
    ) -> AsyncIterator[m.StreamEvent]:
        body = core.run_body(self.info.language, code, limits=limits, context=self.id)
        return self._t.stream(core.execute_stream(body, core.call_path(self._sandbox_id)))

    async def delete(self) -> None:
        await self._t.call(core.delete_context(self._sandbox_id, self.id))


class AsyncProcesses:
    def __init__(self, t: _AsyncTransport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    async def start(
        self,
        command: Union[str, Sequence[str]],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> "AsyncProcess":
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        info = await self._t.call(core.start_process(self._id, argv, env, cwd))
        return AsyncProcess(self._t, self._id, info)

    async def list(self) -> "list[m.ProcessInfo]":
        return await self._t.call(core.list_processes(self._id))


class AsyncProcess:
    def __init__(self, t: _AsyncTransport, sandbox_id: str, info: m.ProcessInfo) -> None:
        self._t = t
        self._sandbox_id = sandbox_id
        self.info = info
        self.id = info.id

    def __repr__(self) -> str:
        return f"AsyncProcess({self.id!r})"

    async def logs(self) -> m.ProcessLogs:
        logs = await self._t.call(core.process_logs(self._sandbox_id, self.id))
        if logs.process is not None:
            self.info = logs.process
        return logs

    async def kill(self) -> None:
        await self._t.call(core.kill_process(self._sandbox_id, self.id))


class AsyncAgentRuns:
    def __init__(self, t: _AsyncTransport) -> None:
        self._t = t

    async def start(
        self,
        task: str,
        model: Mapping[str, Any],
        *,
        executor: Optional[str] = None,
        policy: Optional[str] = None,
        sandbox_id: Optional[str] = None,
        max_turns: Optional[int] = None,
        termination: Optional[Mapping[str, Any]] = None,
        system_message: Optional[str] = None,
        critic: Optional[Mapping[str, Any]] = None,
        default_language: Optional[str] = None,
        max_output_chars: Optional[int] = None,
        require_approval: Optional[bool] = None,
        stateful: Optional[bool] = None,
    ) -> m.AgentRun:
        options = dict(
            executor=executor,
            policy=policy,
            sandbox_id=sandbox_id,
            max_turns=max_turns,
            termination=termination,
            system_message=system_message,
            critic=critic,
            default_language=default_language,
            max_output_chars=max_output_chars,
            require_approval=require_approval,
            stateful=stateful,
        )
        return await self._t.call(core.start_agent_run(task, model, options))

    async def get(self, run_id: str) -> m.AgentRun:
        return await self._t.call(core.get_agent_run(run_id))

    async def list(self, limit: Optional[int] = None) -> "list[m.AgentRun]":
        return await self._t.call(core.list_agent_runs(limit))

    def events(self, run_id: str) -> AsyncIterator[m.AgentEvent]:
        return self._t.stream(core.agent_events(run_id))

    async def wait(self, run_id: str) -> m.AgentRun:
        events = self.events(run_id)
        try:
            async for ev in events:
                if isinstance(ev, m.AgentEnd):
                    break
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return await self.get(run_id)

    async def approve(
        self, run_id: str, approved: bool = True, comment: Optional[str] = None
    ) -> m.AgentRun:
        return await self._t.call(core.approve_agent_run(run_id, approved, comment))

    async def cancel(self, run_id: str) -> m.AgentRun:
        return await self._t.call(core.cancel_agent_run(run_id))

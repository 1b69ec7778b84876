"""The blocking client. Every method builds its request in `_core` and sends it here;
`_async.py` is the same surface with `await` (tests/test_surface.py holds them equal)."""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import httpx

from . import _core as core
from . import _models as m
from ._errors import NotFound

T = TypeVar("T")


class _Transport:
    def __init__(
        self,
        base_url: str,
        api_key: Optional[str],
        timeout: Union[float, httpx.Timeout, None],
        max_retries: int,
        http_client: Optional[httpx.Client],
    ) -> None:
        self.max_retries = max_retries
        self._owned = http_client is None
        self.http = http_client or httpx.Client(timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.headers = core.headers(api_key)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Request:
        extra = kw.pop("headers", None) or {}
        return self.http.build_request(
            method, self.base_url + path, headers={**self.headers, **extra}, **kw
        )

    def _send(self, build: Callable[[], httpx.Request], stream: bool = False) -> httpx.Response:
        attempt = 0
        while True:
            resp = self.http.send(build(), stream=stream)
            wait = core.retry_wait(resp, attempt, self.max_retries)
            if wait is None:
                break
            resp.close()
            time.sleep(wait)
            attempt += 1
        if resp.is_error:
            resp.read()
            resp.close()
            raise core.api_error(resp)
        return resp

    def call(self, c: core.Call[T]) -> T:
        resp = self._send(
            lambda: self._request(
                c.method, c.path, json=c.json, params=c.params, content=c.content, headers=c.headers
            )
        )
        return c.parse(resp)

    def stream(self, c: core.StreamCall[T]) -> Iterator[T]:
        resp = self._send(
            lambda: self._request(
                c.method,
                c.path,
                json=c.json,
                params=c.params,
                headers={"accept": "text/event-stream"},
            ),
            stream=True,
        )
        try:
            for event, data in core.decode_events(resp.iter_lines()):
                item = c.on_event(event, data)
                if item is not None:
                    yield item
        finally:
            resp.close()

    def close(self) -> None:
        if self._owned:
            self.http.close()


class Client:
    """A client of one execbox service.

    `api_key` defaults to the environment's `EXECBOX_API_KEY`. A 429 is retried after its
    `Retry-After` up to `max_retries` times, then raised. `timeout` is httpx's (a run answers
    when it ends, so the read timeout must outlast the longest run)."""

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        *,
        timeout: Union[float, httpx.Timeout, None] = core.DEFAULT_TIMEOUT,
        max_retries: int = 3,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(core.API_KEY_ENV)
        self._t = _Transport(base_url, key, timeout, max_retries, http_client)
        self.sandboxes = Sandboxes(self._t)
        self.agent_runs = AgentRuns(self._t)

    def execute(
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
        """Run one program (`POST /v1/execute`) and return its result."""
        body = core.run_body(language, code, stdin, files, args, env, limits, executor, policy)
        return self._t.call(core.execute(body))

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
    ) -> Iterator[m.StreamEvent]:
        """Run one program and yield its output as it comes, then its result. Closing the
        iterator early hangs up, which cancels the run."""
        body = core.run_body(language, code, stdin, files, args, env, limits, executor, policy)
        return self._t.stream(core.execute_stream(body))

    def execute_batch(
        self, requests: Sequence[Mapping[str, Any]], *, concurrency: Optional[int] = None
    ) -> list[m.BatchItem]:
        """Run many programs (`POST /v1/execute/batch`); each request is a dict of `execute`'s
        arguments. Items come back in order, each a result or the `APIError` it alone failed
        with (returned, not raised)."""
        return self._t.call(core.execute_batch(requests, concurrency))

    def runtimes(self) -> list[dict[str, Any]]:
        return self._t.call(core.runtimes())

    def policies(self) -> list[dict[str, Any]]:
        return self._t.call(core.policies())

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class Sandboxes:
    def __init__(self, t: _Transport) -> None:
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
    ) -> "Sandbox":
        """Create a sandbox; use it as a context manager to delete it on exit."""
        info = self._t.call(
            core.create_sandbox(ttl_seconds, executor, policy, idle_timeout_seconds, env, metadata)
        )
        return Sandbox(self._t, info)

    def get(self, sandbox_id: str) -> "Sandbox":
        return Sandbox(self._t, self._t.call(core.get_sandbox(sandbox_id)))

    def list(self, metadata: Optional[Mapping[str, str]] = None) -> "list[Sandbox]":
        return [Sandbox(self._t, i) for i in self._t.call(core.list_sandboxes(metadata))]


class Sandbox:
    """A sandbox: a work dir that lives across calls. `info` is its view as last read."""

    def __init__(self, t: _Transport, info: m.SandboxInfo) -> None:
        self._t = t
        self.info = info
        self.id = info.id
        self.files = Files(t, self.id)
        self.contexts = Contexts(t, self.id)
        self.processes = Processes(t, self.id)

    def __repr__(self) -> str:
        return f"Sandbox({self.id!r})"

    def execute(
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
        """A call in the sandbox: its files stay for the next one."""
        body = core.run_body(language, code, stdin, files, args, env, limits, context=context)
        return self._t.call(core.execute(body, core.call_path(self.id)))

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
    ) -> Iterator[m.StreamEvent]:
        body = core.run_body(language, code, stdin, files, args, env, limits, context=context)
        return self._t.stream(core.execute_stream(body, core.call_path(self.id)))

    def archive(self) -> bytes:
        """The work dir as a tar."""
        return self._t.call(core.download_archive(self.id))

    def upload_archive(self, tar: bytes) -> None:
        """Unpack a tar into the work dir, over what is there."""
        self._t.call(core.upload_archive(self.id, tar))

    def keepalive(self, ttl_seconds: Optional[int] = None) -> m.SandboxInfo:
        """Expire `ttl_seconds` (default: the sandbox's own TTL) from now."""
        self.info = self._t.call(core.keepalive(self.id, ttl_seconds))
        return self.info

    def refresh(self) -> m.SandboxInfo:
        self.info = self._t.call(core.get_sandbox(self.id))
        return self.info

    def delete(self) -> None:
        self._t.call(core.delete_sandbox(self.id))

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            self.delete()
        except NotFound:
            pass  # already deleted, or expired


class Files:
    """A sandbox's files. Paths are relative to its work dir; `path_encoding="percent"`
    addresses names that are not UTF-8 (README "File names")."""

    def __init__(self, t: _Transport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    def write(
        self, path: str, data: Union[str, bytes], *, path_encoding: Optional[str] = None
    ) -> m.FileInfo:
        """Write a file (text as UTF-8), making its parent dirs."""
        return self._t.call(core.write_file(self._id, path, data, path_encoding))

    def read(self, path: str, *, path_encoding: Optional[str] = None) -> bytes:
        return self._t.call(core.read_file(self._id, path, path_encoding))

    def list(
        self, path: Optional[str] = None, *, path_encoding: Optional[str] = None
    ) -> "list[m.FileInfo]":
        """Everything below `path` (default: the whole work dir), recursively."""
        return self._t.call(core.list_files(self._id, path, path_encoding))


class Contexts:
    def __init__(self, t: _Transport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    def create(self, language: str = "python") -> "Context":
        """A persistent interpreter: variables and imports survive between its calls."""
        return Context(self._t, self._id, self._t.call(core.create_context(self._id, language)))

    def list(self) -> "list[m.ContextInfo]":
        return self._t.call(core.list_contexts(self._id))

    def delete(self, context_id: str) -> None:
        self._t.call(core.delete_context(self._id, context_id))


class Context:
    def __init__(self, t: _Transport, sandbox_id: str, info: m.ContextInfo) -> None:
        self._t = t
        self._sandbox_id = sandbox_id
        self.info = info
        self.id = info.id

    def __repr__(self) -> str:
        return f"Context({self.id!r})"

    def execute(self, code: str, *, limits: Optional[Mapping[str, int]] = None) -> m.ExecuteResult:
        body = core.run_body(self.info.language, code, limits=limits, context=self.id)
        return self._t.call(core.execute(body, core.call_path(self._sandbox_id)))

    def execute_stream(
        self, code: str, *, limits: Optional[Mapping[str, int]] = None
    ) -> Iterator[m.StreamEvent]:
        body = core.run_body(self.info.language, code, limits=limits, context=self.id)
        return self._t.stream(core.execute_stream(body, core.call_path(self._sandbox_id)))

    def delete(self) -> None:
        self._t.call(core.delete_context(self._sandbox_id, self.id))


class Processes:
    def __init__(self, t: _Transport, sandbox_id: str) -> None:
        self._t = t
        self._id = sandbox_id

    def start(
        self,
        command: Union[str, Sequence[str]],
        *,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
    ) -> "Process":
        """Start a background process: an argv list, or a string run by `/bin/sh -c`."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        return Process(self._t, self._id, self._t.call(core.start_process(self._id, argv, env, cwd)))

    def list(self) -> "list[m.ProcessInfo]":
        return self._t.call(core.list_processes(self._id))


class Process:
    def __init__(self, t: _Transport, sandbox_id: str, info: m.ProcessInfo) -> None:
        self._t = t
        self._sandbox_id = sandbox_id
        self.info = info
        self.id = info.id

    def __repr__(self) -> str:
        return f"Process({self.id!r})"

    def logs(self) -> m.ProcessLogs:
        """Its newest output and its state now (also kept in `info`)."""
        logs = self._t.call(core.process_logs(self._sandbox_id, self.id))
        if logs.process is not None:
            self.info = logs.process
        return logs

    def kill(self) -> None:
        """Kill its whole process tree."""
        self._t.call(core.kill_process(self._sandbox_id, self.id))


class AgentRuns:
    """Agent runs: a model writes code, the service runs it in a sandbox, until a termination
    condition fires (README "Agent runs")."""

    def __init__(self, t: _Transport) -> None:
        self._t = t

    def start(
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
        """Start a run; `model` is `{provider, model, base_url?, api_key? | api_key_env?, ...}`.
        Answers `id` and `state` at once; follow it with `events` or `get`."""
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
        return self._t.call(core.start_agent_run(task, model, options))

    def get(self, run_id: str) -> m.AgentRun:
        return self._t.call(core.get_agent_run(run_id))

    def list(self, limit: Optional[int] = None) -> "list[m.AgentRun]":
        """The team's runs, newest first, without their messages."""
        return self._t.call(core.list_agent_runs(limit))

    def events(self, run_id: str) -> Iterator[m.AgentEvent]:
        """Every message so far, then each new one, model deltas, and an `AgentEnd` last.
        Closing it does not cancel the run."""
        return self._t.stream(core.agent_events(run_id))

    def wait(self, run_id: str) -> m.AgentRun:
        """Follow the run until it ends; the whole run."""
        for ev in self.events(run_id):
            if isinstance(ev, m.AgentEnd):
                break
        return self.get(run_id)

    def approve(self, run_id: str, approved: bool = True, comment: Optional[str] = None) -> m.AgentRun:
        """Decide on the block the run holds (`require_approval`)."""
        return self._t.call(core.approve_agent_run(run_id, approved, comment))

    def cancel(self, run_id: str) -> m.AgentRun:
        return self._t.call(core.cancel_agent_run(run_id))

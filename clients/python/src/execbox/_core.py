"""What the sync and the async client share, so the two cannot drift: every request is built
here as a `Call` (or a `StreamCall`) with the function that reads its answer, and the clients
only send it. Also the 429 retry rule, the error mapping and the Server-Sent Events decoder.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Mapping, Optional, Sequence, TypeVar, Union
from urllib.parse import quote

import httpx

from . import _models as m
from ._errors import APIError, error_from_body

T = TypeVar("T")

VERSION = "0.1.0"
API_KEY_ENV = "EXECBOX_API_KEY"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
MAX_RETRY_WAIT = 60.0

Files = Union[Mapping[str, Union[str, bytes]], Sequence[Mapping[str, Any]]]
"""A run's extra files: `{"path": "text" or b"bytes"}`, or the API's own `[{path, content,
encoding}]` objects."""


@dataclass
class Call(Generic[T]):
    """One request and how to read its 2xx answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Optional[dict[str, str]] = None
    content: Optional[bytes] = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamCall(Generic[T]):
    """A request answered with Server-Sent Events; `on_event(event, data)` turns each into an
    item, or None to skip it, or raises the error an `error` event carries."""

    method: str
    path: str
    on_event: Callable[[str, str], Optional[T]]
    json: Any = None
    params: Optional[dict[str, str]] = None


def headers(api_key: Optional[str]) -> dict[str, str]:
    h = {"user-agent": f"execbox-python/{VERSION}"}
    if api_key:
        h["authorization"] = f"Bearer {api_key}"
    return h


# --- answers -------------------------------------------------------------------------------


def retry_after(resp: httpx.Response) -> Optional[float]:
    """`Retry-After` in seconds (a number or an HTTP date), or None."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_wait(resp: httpx.Response, attempt: int, max_retries: int) -> Optional[float]:
    """How long to wait before trying again, or None to give up: only a 429, at most
    `max_retries` times, after its `Retry-After` (1 s without one, at most `MAX_RETRY_WAIT`)."""
    if resp.status_code != 429 or attempt >= max_retries:
        return None
    wait = retry_after(resp)
    return min(MAX_RETRY_WAIT, 1.0 if wait is None else wait)


def api_error(resp: httpx.Response) -> APIError:
    """The exception for a non-2xx answer whose body has been read."""
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return error_from_body(body, resp.status_code, retry_after(resp))


def parse_json(resp: httpx.Response) -> Any:
    return resp.json()


def parse_none(resp: httpx.Response) -> None:
    return None


def parse_bytes(resp: httpx.Response) -> bytes:
    return resp.content


class SSEDecoder:
    """Server-Sent Events from lines: `feed(line)` returns `(event, data)` when a blank line
    ends an event; comments (`: keepalive`) and events without data are dropped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Optional[tuple[str, str]]:
        line = line.rstrip("\r\n")
        if line == "":
            event, data = self._event or "message", self._data
            self._event, self._data = "", []
            return (event, "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def decode_events(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    decoder = SSEDecoder()
    for line in lines:
        ev = decoder.feed(line)
        if ev is not None:
            yield ev


# --- runs ----------------------------------------------------------------------------------


def files_json(files: Files) -> list[dict[str, Any]]:
    if isinstance(files, Mapping):
        out: list[dict[str, Any]] = []
        for path, content in files.items():
            if isinstance(content, bytes):
                encoded = base64.b64encode(content).decode("ascii")
                out.append({"path": path, "content": encoded, "encoding": "base64"})
            else:
                out.append({"path": path, "content": content})
        return out
    return [dict(f) for f in files]


def run_body(
    language: str,
    code: str,
    stdin: Optional[str] = None,
    files: Optional[Files] = None,
    args: Optional[Sequence[str]] = None,
    env: Optional[Mapping[str, str]] = None,
    limits: Optional[Mapping[str, int]] = None,
    executor: Optional[str] = None,
    policy: Optional[str] = None,
    context: Optional[str] = None,
) -> dict[str, Any]:
    """The body of `POST /v1/execute` (a sandbox call has no `executor` or `policy`)."""
    body: dict[str, Any] = {"language": language, "code": code}
    if stdin is not None:
        body["stdin"] = stdin
    if files:
        body["files"] = files_json(files)
    if args is not None:
        body["args"] = list(args)
    if env is not None:
        body["env"] = dict(env)
    if limits is not None:
        body["limits"] = dict(limits)
    if executor is not None:
        body["executor"] = executor
    if policy is not None:
        body["policy"] = policy
    if context is not None:
        body["context"] = context
    return body


def parse_result(resp: httpx.Response) -> m.ExecuteResult:
    return m.ExecuteResult.from_json(resp.json())


def run_event(event: str, data: str) -> Optional[m.StreamEvent]:
    if event in ("stdout", "stderr"):
        return m.OutputEvent(event, json.loads(data)["data"])
    if event == "result":
        return m.ResultEvent(m.ExecuteResult.from_json(json.loads(data)))
    if event == "error":
        raise error_from_body(json.loads(data))
    return None


def execute(body: dict[str, Any], path: str = "/v1/execute") -> Call[m.ExecuteResult]:
    return Call("POST", path, parse_result, json=body)


def execute_stream(body: dict[str, Any], path: str = "/v1/execute") -> StreamCall[m.StreamEvent]:
    return StreamCall("POST", path, run_event, json=body)


def execute_batch(
    requests: Sequence[Mapping[str, Any]], concurrency: Optional[int]
) -> Call[list[m.BatchItem]]:
    body: dict[str, Any] = {"requests": [run_body(**r) for r in requests]}
    if concurrency is not None:
        body["concurrency"] = concurrency
    return Call(
        "POST",
        "/v1/execute/batch",
        lambda r: [m.batch_item(i) for i in r.json()["results"]],
        json=body,
    )


def runtimes() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/runtimes", lambda r: r.json()["runtimes"])


def policies() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/policies", lambda r: r.json()["policies"])


# --- sandboxes -----------------------------------------------------------------------------


def sandbox_path(sandbox_id: str, rest: str = "") -> str:
    return f"/v1/sandboxes/{quote(sandbox_id, safe='')}{rest}"


def parse_sandbox(resp: httpx.Response) -> m.SandboxInfo:
    return m.SandboxInfo.from_json(resp.json())


def create_sandbox(
    ttl_seconds: int,
    executor: Optional[str],
    policy: Optional[str],
    idle_timeout_seconds: Optional[int],
    env: Optional[Mapping[str, str]],
    metadata: Optional[Mapping[str, str]],
) -> Call[m.SandboxInfo]:
    body: dict[str, Any] = {"ttl_seconds": ttl_seconds}
    for key, value in (
        ("executor", executor),
        ("policy", policy),
        ("idle_timeout_seconds", idle_timeout_seconds),
        ("env", dict(env) if env is not None else None),
        ("metadata", dict(metadata) if metadata is not None else None),
    ):
        if value is not None:
            body[key] = value
    return Call("POST", "/v1/sandboxes", parse_sandbox, json=body)


def get_sandbox(sandbox_id: str) -> Call[m.SandboxInfo]:
    return Call("GET", sandbox_path(sandbox_id), parse_sandbox)


def list_sandboxes(metadata: Optional[Mapping[str, str]]) -> Call[list[m.SandboxInfo]]:
    params = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
    return Call(
        "GET",
        "/v1/sandboxes",
        lambda r: [m.SandboxInfo.from_json(s) for s in r.json()["sandboxes"]],
        params=params,
    )


def delete_sandbox(sandbox_id: str) -> Call[None]:
    return Call("DELETE", sandbox_path(sandbox_id), parse_none)


def keepalive(sandbox_id: str, ttl_seconds: Optional[int]) -> Call[m.SandboxInfo]:
    body = {"ttl_seconds": ttl_seconds} if ttl_seconds is not None else {}
    return Call("POST", sandbox_path(sandbox_id, "/keepalive"), parse_sandbox, json=body)


def call_path(sandbox_id: str) -> str:
    return sandbox_path(sandbox_id, "/execute")


def _file_params(path_encoding: Optional[str]) -> Optional[dict[str, str]]:
    return {"path_encoding": path_encoding} if path_encoding else None


def write_file(
    sandbox_id: str, path: str, data: Union[str, bytes], path_encoding: Optional[str]
) -> Call[m.FileInfo]:
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return Call(
        "PUT",
        sandbox_path(sandbox_id, "/files/" + quote(path, safe="/")),
        lambda r: m.FileInfo.from_json(r.json()),
        content=content,
        params=_file_params(path_encoding),
        headers={"content-type": "application/octet-stream"},
    )


def read_file(sandbox_id: str, path: str, path_encoding: Optional[str]) -> Call[bytes]:
    return Call(
        "GET",
        sandbox_path(sandbox_id, "/files/" + quote(path, safe="/")),
        parse_bytes,
        params=_file_params(path_encoding),
    )


def list_files(
    sandbox_id: str, path: Optional[str], path_encoding: Optional[str]
) -> Call[list[m.FileInfo]]:
    params = _file_params(path_encoding) or {}
    if path is not None:
        params["path"] = path
    return Call(
        "GET",
        sandbox_path(sandbox_id, "/files"),
        lambda r: [m.FileInfo.from_json(f) for f in r.json()["files"]],
        params=params,
    )


def download_archive(sandbox_id: str) -> Call[bytes]:
    return Call("GET", sandbox_path(sandbox_id, "/archive"), parse_bytes)


def upload_archive(sandbox_id: str, tar: bytes) -> Call[None]:
    return Call(
        "POST",
        sandbox_path(sandbox_id, "/archive"),
        parse_none,
        content=tar,
        headers={"content-type": "application/x-tar"},
    )


def create_context(sandbox_id: str, language: str) -> Call[m.ContextInfo]:
    return Call(
        "POST",
        sandbox_path(sandbox_id, "/contexts"),
        lambda r: m.ContextInfo.from_json(r.json()),
        json={"language": language},
    )


def list_contexts(sandbox_id: str) -> Call[list[m.ContextInfo]]:
    return Call(
        "GET",
        sandbox_path(sandbox_id, "/contexts"),
        lambda r: [m.ContextInfo.from_json(c) for c in r.json()["contexts"]],
    )


def delete_context(sandbox_id: str, context_id: str) -> Call[None]:
    return Call("DELETE", sandbox_path(sandbox_id, f"/contexts/{quote(context_id, safe='')}"), parse_none)


def start_process(
    sandbox_id: str,
    command: Sequence[str],
    env: Optional[Mapping[str, str]],
    cwd: Optional[str],
) -> Call[m.ProcessInfo]:
    body: dict[str, Any] = {"command": list(command)}
    if env is not None:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    return Call(
        "POST",
        sandbox_path(sandbox_id, "/processes"),
        lambda r: m.ProcessInfo.from_json(r.json()),
        json=body,
    )


def list_processes(sandbox_id: str) -> Call[list[m.ProcessInfo]]:
    return Call(
        "GET",
        sandbox_path(sandbox_id, "/processes"),
        lambda r: [m.ProcessInfo.from_json(p) for p in r.json()["processes"]],
    )


def process_logs(sandbox_id: str, process_id: str) -> Call[m.ProcessLogs]:
    return Call(
        "GET",
        sandbox_path(sandbox_id, f"/processes/{quote(process_id, safe='')}/logs"),
        lambda r: m.ProcessLogs.from_json(r.json()),
    )


def kill_process(sandbox_id: str, process_id: str) -> Call[None]:
    return Call("DELETE", sandbox_path(sandbox_id, f"/processes/{quote(process_id, safe='')}"), parse_none)


# --- agent runs ----------------------------------------------------------------------------


def agent_path(run_id: str = "", rest: str = "") -> str:
    return "/v1/agent/runs" + (f"/{quote(run_id, safe='')}" if run_id else "") + rest


def parse_agent_run(resp: httpx.Response) -> m.AgentRun:
    return m.AgentRun.from_json(resp.json())


def start_agent_run(task: str, model: Mapping[str, Any], options: Mapping[str, Any]) -> Call[m.AgentRun]:
    body: dict[str, Any] = {"task": task, "model": dict(model)}
    body.update({k: v for k, v in options.items() if v is not None})
    return Call("POST", agent_path(), parse_agent_run, json=body)


def get_agent_run(run_id: str) -> Call[m.AgentRun]:
    return Call("GET", agent_path(run_id), parse_agent_run)


def list_agent_runs(limit: Optional[int]) -> Call[list[m.AgentRun]]:
    return Call(
        "GET",
        agent_path(),
        lambda r: [m.AgentRun.from_json(a) for a in r.json()["runs"]],
        params={"limit": str(limit)} if limit is not None else None,
    )


def approve_agent_run(run_id: str, approved: bool, comment: Optional[str]) -> Call[m.AgentRun]:
    body: dict[str, Any] = {"approved": approved}
    if comment is not None:
        body["comment"] = comment
    return Call("POST", agent_path(run_id, "/approval"), parse_agent_run, json=body)


def cancel_agent_run(run_id: str) -> Call[m.AgentRun]:
    return Call("DELETE", agent_path(run_id), parse_agent_run)


def agent_event(event: str, data: str) -> Optional[m.AgentEvent]:
    d = json.loads(data)
    if event == "message":
        return m.AgentMessage.from_json(d)
    if event == "delta":
        return m.AgentDelta(d["source"], d["text"])
    if event == "end":
        return m.AgentEnd.from_json(d)
    return None


def agent_events(run_id: str) -> StreamCall[m.AgentEvent]:
    return StreamCall("GET", agent_path(run_id, "/events"), agent_event)

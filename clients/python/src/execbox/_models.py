"""What the API answers, as dataclasses mirroring its JSON (README "HTTP API", `/openapi.json`).

Each keeps the whole JSON object it was read from in `raw`, so a field a newer service adds is
still reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from ._errors import APIError, error_from_body

Json = Mapping[str, Any]


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


@dataclass
class Usage:
    """What a run used, from its cgroup (the whole process tree)."""

    wall_time_ms: int
    cpu_time_ms: int
    peak_memory_bytes: int

    @classmethod
    def from_json(cls, d: Json) -> "Usage":
        return cls(d["wall_time_ms"], d["cpu_time_ms"], d["peak_memory_bytes"])


@dataclass
class CompileResult:
    """The compile step of a C/C++ run."""

    status: str
    exit_code: Optional[int]
    stdout: str
    stderr: str
    usage: Usage

    @classmethod
    def from_json(cls, d: Json) -> "CompileResult":
        return cls(d["status"], d["exit_code"], d["stdout"], d["stderr"], Usage.from_json(d["usage"]))


@dataclass
class ContextError:
    """A context call's uncaught exception."""

    name: str
    value: str
    traceback: str


@dataclass
class ExecuteResult:
    """A run's result. `status` is one of `ok`, `error`, `timeout`, `cpu_limit`,
    `memory_limit`, `killed`, `compile_error`; a limit hit is a status, never an exception.
    `results` and `error` are set only for a call in a context."""

    id: str
    status: str
    exit_code: Optional[int]
    signal: Optional[str]
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    usage: Usage
    compile: Optional[CompileResult]
    executor: str
    policy: str
    language: str
    runtime_version: str
    results: Optional[list[dict[str, Any]]] = None
    error: Optional[ContextError] = None
    raw: dict[str, Any] = _raw()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_json(cls, d: Json) -> "ExecuteResult":
        compile_ = d.get("compile")
        error = d.get("error")
        return cls(
            id=d["id"],
            status=d["status"],
            exit_code=d["exit_code"],
            signal=d["signal"],
            stdout=d["stdout"],
            stderr=d["stderr"],
            stdout_truncated=d["stdout_truncated"],
            stderr_truncated=d["stderr_truncated"],
            usage=Usage.from_json(d["usage"]),
            compile=CompileResult.from_json(compile_) if compile_ else None,
            executor=d["executor"],
            policy=d["policy"],
            language=d["language"],
            runtime_version=d["runtime_version"],
            results=d.get("results"),
            error=ContextError(error["name"], error["value"], error["traceback"]) if error else None,
            raw=dict(d),
        )


@dataclass
class OutputEvent:
    """A piece of a streamed run's output, as the program wrote it."""

    stream: str  # "stdout" or "stderr"
    data: str


@dataclass
class ResultEvent:
    """The last event of a streamed run."""

    result: ExecuteResult


StreamEvent = Union[OutputEvent, ResultEvent]
"""What `execute_stream` yields: output events, then one `ResultEvent`. A run the service
failed raises the matching `APIError` instead of a result."""


BatchItem = Union[ExecuteResult, APIError]
"""A batch's item: a result, or the error that item alone failed with (not raised)."""


def batch_item(d: Json) -> BatchItem:
    if "error" in d and "status" not in d:
        return error_from_body(d)
    return ExecuteResult.from_json(d)


@dataclass
class SandboxInfo:
    """A sandbox as the API shows it (its `env` is never shown)."""

    id: str
    executor: str
    policy: str
    state: str
    created_at: str
    expires_at: str
    last_used_at: str
    idle_timeout_seconds: Optional[int]
    metadata: dict[str, str]
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, d: Json) -> "SandboxInfo":
        return cls(
            id=d["id"],
            executor=d["executor"],
            policy=d["policy"],
            state=d["state"],
            created_at=d["created_at"],
            expires_at=d["expires_at"],
            last_used_at=d["last_used_at"],
            idle_timeout_seconds=d["idle_timeout_seconds"],
            metadata=dict(d["metadata"]),
            raw=dict(d),
        )


@dataclass
class FileInfo:
    """A file of a sandbox's work dir. `path_encoding` is `utf-8`, or `percent` for a name
    that is not UTF-8 (README "File names"); `type` is `file`, `dir` or `symlink` (None for
    the answer of a write, which is always a file)."""

    path: str
    path_encoding: str
    size: int
    type: Optional[str] = None

    @classmethod
    def from_json(cls, d: Json) -> "FileInfo":
        return cls(d["path"], d["path_encoding"], d["size"], d.get("type"))


@dataclass
class ContextInfo:
    """A stateful Python context: `state` is `idle`, `busy` or `lost`."""

    id: str
    language: str
    state: str

    @classmethod
    def from_json(cls, d: Json) -> "ContextInfo":
        return cls(d["id"], d["language"], d["state"])


@dataclass
class ProcessInfo:
    """A background process: `state` is `running` or `exited`."""

    id: str
    command: list[str]
    state: str
    exit_code: Optional[int]
    signal: Optional[str]
    started_at: str

    @classmethod
    def from_json(cls, d: Json) -> "ProcessInfo":
        return cls(d["id"], list(d["command"]), d["state"], d["exit_code"], d["signal"], d["started_at"])


@dataclass
class ProcessLogs:
    """The newest output of a background process (up to its `output_bytes` per stream)."""

    stdout: str
    stderr: str
    process: Optional[ProcessInfo]

    @classmethod
    def from_json(cls, d: Json) -> "ProcessLogs":
        p = d.get("process")
        return cls(d["stdout"], d["stderr"], ProcessInfo.from_json(p) if p else None)


@dataclass
class AgentUsage:
    input_tokens: int
    output_tokens: int
    total_tokens: int
    estimated: bool
    turns: int
    executions: int

    @classmethod
    def from_json(cls, d: Json) -> "AgentUsage":
        return cls(
            d["input_tokens"],
            d["output_tokens"],
            d["total_tokens"],
            d["estimated"],
            d["turns"],
            d["executions"],
        )


@dataclass
class AgentMessage:
    """One message of an agent run. `type` is `task`, `text`, `code_execution`,
    `code_not_run`, `model_retry`, `approval_request` or `approval_decision`; the fields of
    each type are in `raw` (README "Messages"), the common ones here. `result` is set for a
    `code_execution`."""

    index: int
    source: str
    type: str
    at: str
    content: Optional[str] = None
    language: Optional[str] = None
    code: Optional[str] = None
    result: Optional[ExecuteResult] = None
    reason: Optional[str] = None
    raw: dict[str, Any] = _raw()

    @classmethod
    def from_json(cls, d: Json) -> "AgentMessage":
        result = d.get("result")
        return cls(
            index=d["index"],
            source=d["source"],
            type=d["type"],
            at=d["at"],
            content=d.get("content"),
            language=d.get("language"),
            code=d.get("code"),
            result=ExecuteResult.from_json(result) if result else None,
            reason=d.get("reason"),
            raw=dict(d),
        )


@dataclass
class AgentRun:
    """An agent run. The answers of `start` and `approve` carry only `id` and `state`; `get`
    and `cancel` answer the whole run. `state` is `queued`, `running`, `finished`, `failed` or
    `cancelled`."""

    id: str
    state: str
    stop_reason: Optional[str] = None
    error: Optional[str] = None
    usage: Optional[AgentUsage] = None
    executor: Optional[str] = None
    policy: Optional[str] = None
    sandbox_id: Optional[str] = None
    awaiting_approval: bool = False
    created_at: Optional[str] = None
    ended_at: Optional[str] = None
    messages: list[AgentMessage] = field(default_factory=list)
    raw: dict[str, Any] = _raw()

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")

    @classmethod
    def from_json(cls, d: Json) -> "AgentRun":
        usage = d.get("usage")
        return cls(
            id=d["id"],
            state=d["state"],
            stop_reason=d.get("stop_reason"),
            error=d.get("error"),
            usage=AgentUsage.from_json(usage) if usage else None,
            executor=d.get("executor"),
            policy=d.get("policy"),
            sandbox_id=d.get("sandbox_id"),
            awaiting_approval=bool(d.get("awaiting_approval", False)),
            created_at=d.get("created_at"),
            ended_at=d.get("ended_at"),
            messages=[AgentMessage.from_json(m) for m in d.get("messages", [])],
            raw=dict(d),
        )


@dataclass
class AgentDelta:
    """A streamed piece of a model's reply (not kept in the run)."""

    source: str
    text: str


@dataclass
class AgentEnd:
    """The last event of an agent run's stream."""

    id: str
    state: str
    stop_reason: Optional[str]
    error: Optional[str]
    usage: AgentUsage

    @classmethod
    def from_json(cls, d: Json) -> "AgentEnd":
        return cls(d["id"], d["state"], d.get("stop_reason"), d.get("error"), AgentUsage.from_json(d["usage"]))


AgentEvent = Union[AgentMessage, AgentDelta, AgentEnd]
"""What `agent_runs.events` yields: messages (the ones so far, then each new one), deltas,
and one `AgentEnd`, after which the stream ends."""

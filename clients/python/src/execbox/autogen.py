"""An AutoGen code executor (autogen-core 0.7) that runs every block in an execbox sandbox.

    from execbox.autogen import ExecboxCodeExecutor

    async with ExecboxCodeExecutor(base_url="http://127.0.0.1:8080") as executor:
        agent = CodeExecutorAgent("executor", code_executor=executor)

One sandbox per executor, made at `start()` (or at the first block) and deleted at `stop()`, so
files persist between blocks as in AutoGen's work dir. Blocks run in order and stop at the first
that fails, as AutoGen's executors do; exit code 124 is a timeout. With `stateful=True` Python
blocks run in one interpreter (a sandbox context), as AutoGen's Jupyter executor does.
Needs `autogen-core` (`pip install 'execbox[autogen]'`).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import List, Optional

from autogen_core import CancellationToken, Component
from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult
from pydantic import BaseModel
from typing_extensions import Self

from ._async import AsyncClient, AsyncSandbox
from ._core import API_KEY_ENV
from ._errors import BadRequest, NotFound, UnprocessableEntity
from ._models import ExecuteResult, ResultEvent

# AutoGen's names for shells; every other tag goes to execbox as is (it takes `python`, `py`,
# `python3`, `bash`, `sh`, `javascript`, `js`, `node`, `c`, `cpp`, `c++`, and answers
# `unknown_language` for the rest, which becomes the block's output).
_LANGUAGES = {"shell": "bash", "python3": "python", "py": "python"}
_FILENAME = re.compile(r"^# filename:\s*(\S+)\s*$")


@dataclass
class ExecboxCodeResult(CodeResult):
    """AutoGen's `CommandLineCodeResult`: `exit_code`, `output` and the `code_file` the first
    block was saved as (when it named one with `# filename: ...`)."""

    code_file: Optional[str]


class ExecboxCodeExecutorConfig(BaseModel):
    """The executor's saved config. The API key is not in it: it is read from the environment
    variable `api_key_env` when the executor is loaded."""

    base_url: str
    api_key_env: str = API_KEY_ENV
    executor: str = "local"
    policy: Optional[str] = None
    timeout: int = 60
    stateful: bool = False
    ttl_seconds: int = 3600


class ExecboxCodeExecutor(CodeExecutor, Component[ExecboxCodeExecutorConfig]):
    """Runs code blocks in an execbox sandbox.

    Args:
        base_url: the execbox service, e.g. `http://127.0.0.1:8080`.
        api_key: its API key; default: the environment variable `api_key_env`.
        executor: `local` or `docker`, the sandbox's executor.
        policy: the sandbox's policy (default: the service's `default`).
        timeout: seconds of wall time (and of CPU time) per block.
        stateful: run Python blocks in one interpreter, keeping variables between blocks.
        api_key_env: the variable the key is read from, here and when loaded from a config.
        ttl_seconds: the sandbox's TTL, renewed while blocks keep coming.
    """

    component_config_schema = ExecboxCodeExecutorConfig
    component_provider_override = "execbox.autogen.ExecboxCodeExecutor"

    def __init__(
        self,
        base_url: str,
        api_key: Optional[str] = None,
        executor: str = "local",
        policy: Optional[str] = None,
        timeout: int = 60,
        stateful: bool = False,
        *,
        api_key_env: str = API_KEY_ENV,
        ttl_seconds: int = 3600,
    ) -> None:
        if timeout < 1:
            raise ValueError("timeout must be at least 1 second")
        self._base_url = base_url
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self._api_key_env = api_key_env
        self._executor = executor
        self._policy = policy
        self._timeout = timeout
        self._stateful = stateful
        self._ttl_seconds = ttl_seconds
        self._client: Optional[AsyncClient] = None
        self._sandbox: Optional[AsyncSandbox] = None
        self._context_id: Optional[str] = None
        self._renew_at = 0.0
        self._starting = asyncio.Lock()  # two first blocks at once make one sandbox

    @property
    def timeout(self) -> int:
        return self._timeout

    @property
    def sandbox_id(self) -> Optional[str]:
        """The sandbox's id while the executor is started."""
        return self._sandbox.id if self._sandbox else None

    async def start(self) -> None:
        """Make the sandbox (done by the first block if not called)."""
        async with self._starting:
            if self._sandbox is not None:
                return
            client = AsyncClient(self._base_url, self._api_key or None)
            try:
                self._sandbox = await client.sandboxes.create(
                    self._ttl_seconds, executor=self._executor, policy=self._policy
                )
            except BaseException:
                await client.close()
                raise
            self._client = client
            self._renew_at = time.monotonic() + self._ttl_seconds / 2

    async def stop(self) -> None:
        """Delete the sandbox with its files, contexts and processes."""
        sandbox, client = self._sandbox, self._client
        self._sandbox, self._client, self._context_id = None, None, None
        try:
            if sandbox is not None:
                await sandbox.__aexit__(None, None, None)
        finally:
            if client is not None:
                await client.close()

    async def restart(self) -> None:
        """A fresh interpreter for stateful blocks (the old one's variables are gone); the
        sandbox's files stay, as a restarted AutoGen container keeps its work dir."""
        if self._sandbox is not None and self._context_id is not None:
            context_id, self._context_id = self._context_id, None
            try:
                await self._sandbox.contexts.delete(context_id)
            except NotFound:
                pass

    async def execute_code_blocks(
        self, code_blocks: List[CodeBlock], cancellation_token: CancellationToken
    ) -> ExecboxCodeResult:
        """Run the blocks in order in the sandbox, stopping at the first that fails."""
        if not code_blocks:
            raise ValueError("No code blocks to execute.")
        await self.start()
        await self._renew_if_due()
        outputs: List[str] = []
        exit_code = 0
        code_file: Optional[str] = None
        for i, block in enumerate(code_blocks):
            match = _FILENAME.match(block.code.split("\n", 1)[0])
            filename = match.group(1) if match else None
            if i == 0:
                code_file = filename
            task = asyncio.ensure_future(self._run_block(block, filename))
            cancellation_token.link_future(task)
            try:
                output, exit_code = await task
            except asyncio.CancelledError:
                if not cancellation_token.is_cancelled():
                    raise
                outputs.append("\nCancelled")
                exit_code = 125
                break
            outputs.append(output)
            if exit_code != 0:
                break
        return ExecboxCodeResult(exit_code=exit_code, output="".join(outputs), code_file=code_file)

    async def _renew_if_due(self) -> None:
        if self._sandbox is not None and time.monotonic() >= self._renew_at:
            await self._sandbox.keepalive()
            self._renew_at = time.monotonic() + self._ttl_seconds / 2

    async def _run_block(self, block: CodeBlock, filename: Optional[str]) -> tuple[str, int]:
        assert self._sandbox is not None
        tag = block.language.strip().lower()
        language = _LANGUAGES.get(tag, tag)
        limits = {"wall_time_ms": self._timeout * 1000, "cpu_time_ms": self._timeout * 1000}
        try:
            if self._stateful and language == "python":
                if filename is not None:
                    await self._sandbox.files.write(filename, block.code)
                if self._context_id is None:
                    self._context_id = (await self._sandbox.contexts.create("python")).id
                events = self._sandbox.execute_stream(
                    language, block.code, limits=limits, context=self._context_id
                )
            else:
                files = {filename: block.code} if filename is not None else None
                events = self._sandbox.execute_stream(language, block.code, files=files, limits=limits)
            result: Optional[ExecuteResult] = None
            async for ev in events:
                if isinstance(ev, ResultEvent):
                    result = ev.result
        except (BadRequest, UnprocessableEntity) as e:
            # The block itself was refused (an unknown language, a bad file name, ...).
            return f"{e.message}\n", 1
        assert result is not None, "the event stream ended without a result"
        return _output(result), _exit_code(result)

    def _to_config(self) -> ExecboxCodeExecutorConfig:
        return ExecboxCodeExecutorConfig(
            base_url=self._base_url,
            api_key_env=self._api_key_env,
            executor=self._executor,
            policy=self._policy,
            timeout=self._timeout,
            stateful=self._stateful,
            ttl_seconds=self._ttl_seconds,
        )

    @classmethod
    def _from_config(cls, config: ExecboxCodeExecutorConfig) -> Self:
        return cls(
            base_url=config.base_url,
            executor=config.executor,
            policy=config.policy,
            timeout=config.timeout,
            stateful=config.stateful,
            api_key_env=config.api_key_env,
            ttl_seconds=config.ttl_seconds,
        )


def _exit_code(r: ExecuteResult) -> int:
    """AutoGen's conventions: the program's own code, 124 for a timeout; the rest as
    `execbox run` exits (152 CPU limit, 137 memory limit, 128 + signal)."""
    if r.status == "timeout":
        return 124
    if r.status == "cpu_limit":
        return 152
    if r.status == "memory_limit":
        return 137
    if r.status == "compile_error":
        return 1
    if r.exit_code is not None:
        return r.exit_code
    if r.signal:
        try:
            return 128 + signal.Signals[r.signal].value
        except KeyError:
            pass
    return 1


def _output(r: ExecuteResult) -> str:
    parts: List[str] = []
    if r.compile is not None and r.status == "compile_error":
        parts += [r.compile.stdout, r.compile.stderr]
    parts += [r.stdout, r.stderr]
    for bundle in r.results or []:
        text = bundle.get("text/plain")
        if text:
            parts.append(text if text.endswith("\n") else text + "\n")
    if r.error is not None and r.error.traceback not in r.stderr:
        parts.append(r.error.traceback)
    notes = {
        "timeout": "\nTimeout",
        "cpu_limit": "\nexecbox: the CPU time limit was reached",
        "memory_limit": "\nexecbox: the memory limit was reached (killed)",
        "killed": f"\nexecbox: killed by {r.signal}",
    }
    out = "".join(parts) + notes.get(r.status, "")
    if r.stdout_truncated or r.stderr_truncated:
        out += "\nexecbox: the output was cut at the sandbox's output limit"
    return out

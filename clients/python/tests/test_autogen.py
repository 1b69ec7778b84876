"""`execbox.autogen.ExecboxCodeExecutor` in a real autogen-agentchat 0.7.5 team, and the
executor on its own: order and first failure, timeouts, files between blocks, stateful blocks,
its component config."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent, CodeExecutorAgent
from autogen_agentchat.conditions import MaxMessageTermination, TextMentionTermination
from autogen_agentchat.teams import RoundRobinGroupChat
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock, CodeExecutor
from autogen_ext.models.openai import OpenAIChatCompletionClient

import execbox
from execbox.autogen import ExecboxCodeExecutor
from scripted_openai import ScriptedOpenAI

BUGGY_CODE = "nums = [1, 2, 3, 4]\nprint(sum(nums) / len(num))\n"
FIXED_CODE = "nums = [1, 2, 3, 4]\nprint(sum(nums) / len(nums))\n"
MODEL_INFO: Any = {
    "vision": False,
    "function_calling": False,
    "json_output": False,
    "structured_output": False,
    "family": "unknown",
}


def run_blocks_with(executor: ExecboxCodeExecutor, token: CancellationToken, *blocks: tuple[str, str]) -> Any:
    return executor.execute_code_blocks([CodeBlock(code=c, language=lang) for lang, c in blocks], token)


def run_blocks(executor: ExecboxCodeExecutor, *blocks: tuple[str, str]) -> Any:
    return run_blocks_with(executor, CancellationToken(), *blocks)


# The executor is the sandbox: AutoGen's advice to approve code first is for executors without one.
@pytest.mark.filterwarnings("ignore:No approval function set for CodeExecutorAgent")
def test_a_team_debugs_its_program_in_execbox(service: dict[str, str], audit: Any) -> None:
    async def go(server: ScriptedOpenAI) -> tuple[Any, str]:
        model_client = OpenAIChatCompletionClient(
            model="scripted", base_url=server.base_url, api_key="sk-test", model_info=MODEL_INFO
        )
        async with ExecboxCodeExecutor(base_url=service["url"], api_key=service["key"]) as executor:
            coder = AssistantAgent("coder", model_client=model_client)
            runner = CodeExecutorAgent("runner", code_executor=executor)
            team = RoundRobinGroupChat(
                [coder, runner],
                termination_condition=TextMentionTermination("TERMINATE") | MaxMessageTermination(12),
            )
            result = await team.run(task="Print the mean of [1, 2, 3, 4].")
            sandbox_id = executor.sandbox_id
            assert sandbox_id is not None
        await model_client.close()
        return result, sandbox_id

    replies = [f"```python\n{BUGGY_CODE}```", f"```python\n{FIXED_CODE}```", "The mean is 2.5. TERMINATE"]
    with ScriptedOpenAI(replies) as server:
        result, sandbox_id = asyncio.run(go(server))
    said = [(m.source, m.content) for m in result.messages]
    assert [s for s, _ in said] == ["user", "coder", "runner", "coder", "runner", "coder"]
    failure = said[2][1]
    assert failure.startswith("The script ran, then exited with an error (POSIX exit code: 1)\nIts output was:\n")
    assert "Traceback (most recent call last):" in failure
    assert "NameError: name 'num' is not defined" in failure.splitlines()[-1]
    assert said[4][1] == "2.5\n"
    assert said[5][1] == "The mean is 2.5. TERMINATE"
    assert result.stop_reason == "Text 'TERMINATE' mentioned"
    # The model read the failure before it fixed the program.
    assert "NameError: name 'num' is not defined" in server.user_texts(1)
    # Both programs ran inside execbox: the audit log has them, as this team's calls in the
    # executor's sandbox (the service keeps code: audit.keep_code).
    rows = audit(
        "SELECT t.name, r.language, r.status, r.code FROM runs r JOIN teams t ON t.id = r.team_id "
        "WHERE r.sandbox_id = ? ORDER BY r.created_at, r.rowid",
        sandbox_id,
    )
    assert rows == [("sdk", "python", "error", BUGGY_CODE), ("sdk", "python", "ok", FIXED_CODE)]
    with execbox.Client(service["url"], service["key"]) as c:
        with pytest.raises(execbox.NotFound):
            c.sandboxes.get(sandbox_id)  # deleted when the executor stopped


def test_blocks_run_in_order_and_stop_at_the_first_failure(service: dict[str, str]) -> None:
    async def go() -> None:
        async with ExecboxCodeExecutor(service["url"], service["key"]) as ex:
            r = await run_blocks(
                ex,
                ("python", "open('note.txt', 'w').write('from python\\n')\nprint('a')"),
                ("sh", "cat note.txt"),
                ("bash", "echo b; exit 3"),
                ("python", "print('never')"),
            )
            assert (r.exit_code, r.output) == (3, "a\nfrom python\nb\n")
            # Files stay between calls too; a `# filename:` block is saved under its name.
            r = await run_blocks(ex, ("python", "# filename: hello.py\nprint('hi')"), ("shell", "cat note.txt hello.py"))
            assert (r.exit_code, r.output, r.code_file) == (0, "hi\nfrom python\n# filename: hello.py\nprint('hi')", "hello.py")
            r = await run_blocks(ex, ("cobol", "DISPLAY 'X'."))
            assert r.exit_code == 1 and r.output.startswith("unknown language")
            # Without stateful, each python block is its own program.
            r = await run_blocks(ex, ("python", "x = 1"), ("python", "print(x)"))
            assert r.exit_code == 1 and "NameError: name 'x' is not defined" in r.output

    asyncio.run(go())


def test_cancelling_kills_the_block(service: dict[str, str], audit: Any) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(30)\n"

    async def go() -> None:
        async with ExecboxCodeExecutor(service["url"], service["key"]) as ex:
            token = CancellationToken()
            task = asyncio.ensure_future(run_blocks_with(ex, token, ("python", code)))
            await asyncio.sleep(1.0)
            token.cancel()
            r = await task
            assert (r.exit_code, r.output) == (125, "\nCancelled")
            # Calls in a sandbox take turns: this one runs at once only if the other was killed.
            started = time.monotonic()
            r = await run_blocks(ex, ("python", "print('next')"))
            assert (r.exit_code, r.output) == (0, "next\n")
            assert time.monotonic() - started < 10
            rows = audit("SELECT status FROM runs WHERE sandbox_id = ? AND code = ?", ex.sandbox_id, code)
            assert rows == [("cancelled",)]

    asyncio.run(go())


def test_a_block_past_the_timeout_exits_124(service: dict[str, str]) -> None:
    async def go() -> None:
        async with ExecboxCodeExecutor(service["url"], service["key"], timeout=1) as ex:
            r = await run_blocks(ex, ("python", "import time\nprint('start', flush=True)\ntime.sleep(30)"))
            assert (r.exit_code, r.output) == (124, "start\n\nTimeout")

    asyncio.run(go())


def test_stateful_blocks_share_one_interpreter(service: dict[str, str]) -> None:
    async def go() -> None:
        async with ExecboxCodeExecutor(service["url"], service["key"], stateful=True) as ex:
            r = await run_blocks(ex, ("python", "x = 41"), ("python", "x += 1\nprint(x)"))
            assert (r.exit_code, r.output) == (0, "42\n")
            r = await run_blocks(ex, ("python", "x * 2"))
            assert (r.exit_code, r.output) == (0, "84\n")
            r = await run_blocks(ex, ("python", "raise ValueError('bad')"), ("python", "print('never')"))
            assert r.exit_code == 1 and "ValueError: bad" in r.output and "never" not in r.output
            await ex.restart()
            r = await run_blocks(ex, ("python", "print(x)"))
            assert r.exit_code == 1 and "NameError" in r.output

    asyncio.run(go())


def test_the_config_names_the_key_variable_not_the_key(service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    ex = ExecboxCodeExecutor(service["url"], api_key=service["key"], executor="local", timeout=30, stateful=True)
    dumped = ex.dump_component()
    assert dumped.provider == "execbox.autogen.ExecboxCodeExecutor"
    assert dumped.component_type == "code_executor"
    assert dumped.config == {
        "base_url": service["url"],
        "api_key_env": "EXECBOX_API_KEY",
        "executor": "local",
        "timeout": 30,
        "stateful": True,
        "ttl_seconds": 3600,
    }
    assert service["key"] not in json.dumps(dumped.model_dump())

    async def run_loaded() -> Any:
        loaded = CodeExecutor.load_component(dumped)
        assert isinstance(loaded, ExecboxCodeExecutor)
        async with loaded:
            return await run_blocks(loaded, ("python", "print(7 * 6)"))

    monkeypatch.setenv("EXECBOX_API_KEY", service["key"])
    r = asyncio.run(run_loaded())
    assert (r.exit_code, r.output) == (0, "42\n")
    # Loaded without the variable, it has no key, and the service says so.
    monkeypatch.delenv("EXECBOX_API_KEY")
    with pytest.raises(execbox.Unauthorized):
        asyncio.run(run_loaded())

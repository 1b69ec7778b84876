"""Agent runs through both clients, the model a scripted OpenAI-compatible server on loopback
(the service under test allows private base URLs)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import execbox
from scripted_openai import Hold, ScriptedOpenAI

BUGGY = "```python\nnums = [1, 2, 3, 4]\nprint(sum(nums) / len(num))\n```"
FIXED = "```python\nnums = [1, 2, 3, 4]\nprint(sum(nums) / len(nums))\n```"
DONE = "The mean is 2.5. TERMINATE"


def model(server: ScriptedOpenAI, stream: bool = True) -> dict[str, Any]:
    return {"provider": "openai", "model": "scripted", "base_url": server.base_url, "api_key": "sk-test", "stream": stream}


def check_debugged_run(run: execbox.AgentRun) -> None:
    assert (run.state, run.stop_reason, run.error) == ("finished", "text_mention: TERMINATE", None)
    assert [(m.source, m.type) for m in run.messages] == [
        ("user", "task"),
        ("coder", "text"),
        ("executor", "code_execution"),
        ("executor", "text"),
        ("coder", "text"),
        ("executor", "code_execution"),
        ("executor", "text"),
        ("coder", "text"),
    ]
    failed, passed = run.messages[2].result, run.messages[5].result
    assert failed is not None and (failed.status, failed.exit_code) == ("error", 1)
    assert "NameError: name 'num' is not defined" in failed.stderr
    assert passed is not None and (passed.status, passed.stdout) == ("ok", "2.5\n")
    assert run.messages[7].content == DONE
    assert run.usage is not None and (run.usage.turns, run.usage.executions) == (3, 2)
    assert run.sandbox_id and run.sandbox_id.startswith("sb_")


def test_an_agent_run_debugs_its_program(client: execbox.Client) -> None:
    with ScriptedOpenAI([BUGGY, FIXED, DONE]) as server:
        started = client.agent_runs.start("Print the mean of [1, 2, 3, 4].", model(server), max_turns=5)
        assert started.id.startswith("ar_") and started.state in ("queued", "running")
        events = list(client.agent_runs.events(started.id))
        run = client.agent_runs.get(started.id)
    check_debugged_run(run)
    # The stream: every message once, in order, deltas of the replies, and the end last.
    messages = [e for e in events if isinstance(e, execbox.AgentMessage)]
    assert [m.index for m in messages] == list(range(len(run.messages)))
    assert [m.raw for m in messages] == [m.raw for m in run.messages]
    # Deltas are not kept: those streamed before the subscription are not replayed; the last
    # reply comes after two executions, well after it.
    deltas = "".join(e.text for e in events if isinstance(e, execbox.AgentDelta))
    assert (BUGGY + FIXED + DONE).endswith(deltas) and deltas.endswith(DONE), deltas
    end = events[-1]
    assert isinstance(end, execbox.AgentEnd)
    assert (end.id, end.state, end.stop_reason) == (run.id, "finished", "text_mention: TERMINATE")
    # The model read the failure before it fixed the program.
    assert "NameError" in server.user_texts(1)
    assert run.id in [r.id for r in client.agent_runs.list(limit=50)]


def test_a_held_block_runs_once_approved(client: execbox.Client) -> None:
    with ScriptedOpenAI(["```python\nprint('approved')\n```", "TERMINATE"]) as server:
        run = client.agent_runs.start("Say it.", model(server, stream=False), require_approval=True)
        for _ in range(200):
            run = client.agent_runs.get(run.id)
            if run.awaiting_approval:
                break
            time.sleep(0.05)
        assert run.awaiting_approval and run.messages[-1].type == "approval_request"
        assert client.agent_runs.approve(run.id, True, "fine").id == run.id
        run = client.agent_runs.wait(run.id)
        with pytest.raises(execbox.Conflict) as e:
            client.agent_runs.approve(run.id)
        assert e.value.code == "no_pending_approval"
    assert run.state == "finished"
    kinds = [m.type for m in run.messages]
    assert kinds[:5] == ["task", "text", "approval_request", "approval_decision", "code_execution"]
    assert run.messages[3].raw["approved"] is True and run.messages[3].raw["comment"] == "fine"
    result = run.messages[4].result
    assert result is not None and result.stdout == "approved\n"


def test_cancel(client: execbox.Client) -> None:
    with ScriptedOpenAI([Hold()]) as server:
        run = client.agent_runs.start("Wait.", model(server))
        for _ in range(200):
            if server.requests:
                break
            time.sleep(0.05)
        assert server.requests, "the run never asked the model"
        cancelled = client.agent_runs.cancel(run.id)
    assert (cancelled.state, cancelled.stop_reason) == ("cancelled", "cancelled")
    assert client.agent_runs.get(run.id).state == "cancelled"
    with pytest.raises(execbox.NotFound) as e:
        client.agent_runs.get("ar_missing")
    assert e.value.code == "agent_run_not_found"


def test_the_async_agent_runs(aclient_args: tuple[str, str]) -> None:
    async def go(server: ScriptedOpenAI) -> tuple[execbox.AgentRun, list[execbox.AgentEvent]]:
        async with execbox.AsyncClient(*aclient_args) as c:
            started = await c.agent_runs.start("Print the mean of [1, 2, 3, 4].", model(server), max_turns=5)
            events = [ev async for ev in c.agent_runs.events(started.id)]
            return await c.agent_runs.get(started.id), events

    with ScriptedOpenAI([BUGGY, FIXED, DONE]) as server:
        run, events = asyncio.run(go(server))
    check_debugged_run(run)
    assert isinstance(events[-1], execbox.AgentEnd) and events[-1].state == "finished"

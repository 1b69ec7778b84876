"""What needs no service: the sync and async surfaces are the same, the SSE decoder, the error
mapping."""

from __future__ import annotations

import inspect

import pytest

import execbox
from execbox import _core as core

PAIRS = [
    (execbox.Client, execbox.AsyncClient),
    (execbox.Sandboxes, execbox.AsyncSandboxes),
    (execbox.Sandbox, execbox.AsyncSandbox),
    (execbox.Files, execbox.AsyncFiles),
    (execbox.Context, execbox.AsyncContext),
    (execbox.Process, execbox.AsyncProcess),
    (execbox.AgentRuns, execbox.AsyncAgentRuns),
]


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(cls).items()
        if callable(fn) and not name.startswith("_")
    }


@pytest.mark.parametrize("sync_cls, async_cls", PAIRS, ids=lambda c: c.__name__)
def test_the_async_surface_is_the_sync_one(sync_cls: type, async_cls: type) -> None:
    sync, async_ = public_methods(sync_cls), public_methods(async_cls)
    assert sorted(sync) == sorted(async_)
    for name, sig in sync.items():
        a = async_[name]
        assert list(sig.parameters) == list(a.parameters), name
        for p, q in zip(sig.parameters.values(), a.parameters.values()):
            assert (p.kind, p.default) == (q.kind, q.default), f"{sync_cls.__name__}.{name}({p.name})"


def test_sse_decoder_joins_data_lines_and_drops_comments() -> None:
    lines = [
        ": keepalive",
        "",
        "event: stdout",
        'data: {"data":',
        'data: "a"}',
        "",
        "event:result",
        "data:{}",
        "",
        "data: plain",
        "",
    ]
    assert list(core.decode_events(lines)) == [
        ("stdout", '{"data":\n"a"}'),
        ("result", "{}"),
        ("message", "plain"),
    ]


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (400, "unknown_language", execbox.BadRequest),
        (401, "unauthorized", execbox.Unauthorized),
        (404, "sandbox_not_found", execbox.NotFound),
        (409, "path_conflict", execbox.Conflict),
        (410, "context_lost", execbox.Gone),
        (413, "too_large", execbox.PayloadTooLarge),
        (422, "limit_exceeded", execbox.UnprocessableEntity),
        (429, "quota_exceeded", execbox.QuotaExceeded),
        (429, "over_capacity", execbox.OverCapacity),
        (500, "internal_error", execbox.InternalServerError),
        (503, "executor_unavailable", execbox.ServiceUnavailable),
    ],
)
def test_errors_map_by_status_and_by_code_alone(status: int, code: str, cls: type) -> None:
    body = {"error": {"code": code, "message": "m"}}
    by_status = execbox._errors.error_from_body(body, status)
    by_code = execbox._errors.error_from_body(body)
    for e in (by_status, by_code):
        assert type(e) is cls
        assert (e.code, e.message) == (code, "m")
    assert by_status.status == status and by_code.status is None


def test_files_as_a_mapping_become_the_api_objects() -> None:
    assert core.files_json({"a.txt": "hi", "b.bin": b"\x00\xff"}) == [
        {"path": "a.txt", "content": "hi"},
        {"path": "b.bin", "content": "AP8=", "encoding": "base64"},
    ]

"""The exceptions: one class per class of API error, each carrying the API's stable `code`.

Every non-2xx answer of execbox is `{"error": {"code", "message"}}`. The class is chosen by the
HTTP status (and, for 429, by the code); where there is no status (a batch item's error, a
stream's `error` event) by the code, through the table of codes the API documents.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional


class ExecboxError(Exception):
    """Everything this package raises on purpose."""


class APIError(ExecboxError):
    """An error answer of the API: `status` (None inside a batch or a stream), `code`, `message`."""

    def __init__(
        self,
        code: str,
        message: str,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


class BadRequest(APIError):
    """400: the request is malformed (`invalid_request`, `unknown_language`, `path_refused`, ...)."""


class Unauthorized(APIError):
    """401 `unauthorized`: no valid API key."""


class NotFound(APIError):
    """404: `sandbox_not_found`, `file_not_found`, `context_not_found`, `unknown_policy`, ..."""


class MethodNotAllowed(APIError):
    """405 `method_not_allowed`."""


class Conflict(APIError):
    """409: `path_conflict`, `no_pending_approval`."""


class Gone(APIError):
    """410 `context_lost`: the context's interpreter died; delete it and make another."""


class PayloadTooLarge(APIError):
    """413: `too_large` (the sandbox's disk), `body_too_large` (the service's `max_body_bytes`)."""


class UnsupportedMediaType(APIError):
    """415 `unsupported_media_type`."""


class UnprocessableEntity(APIError):
    """422: well-formed but refused (`limit_exceeded`, `invalid_sandbox`, `invalid_model`, ...)."""


class RateLimited(APIError):
    """429: retried after `Retry-After` up to the client's `max_retries`, then raised."""


class QuotaExceeded(RateLimited):
    """429 `quota_exceeded`: the team's own quota (runs or sandboxes)."""


class OverCapacity(RateLimited):
    """429 `over_capacity`: every run slot and the service's queue are full."""


class InternalServerError(APIError):
    """500 `internal_error`: the service failed; it logged why."""


class ServiceUnavailable(APIError):
    """503: `executor_unavailable`, `runtime_unavailable`, `sandbox_uids_exhausted`, `not_ready`."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableEntity,
    429: RateLimited,
    500: InternalServerError,
    503: ServiceUnavailable,
}

_BY_CODE_429: dict[str, type[RateLimited]] = {
    "quota_exceeded": QuotaExceeded,
    "over_capacity": OverCapacity,
}

# The status each documented code is answered with, for errors that come without one.
_STATUS_OF_CODE: dict[str, int] = {
    **dict.fromkeys(
        [
            "malformed_json",
            "invalid_request",
            "invalid_file",
            "unknown_language",
            "unknown_executor",
            "path_refused",
            "invalid_archive",
            "invalid_body",
        ],
        400,
    ),
    "unauthorized": 401,
    **dict.fromkeys(
        [
            "unknown_policy",
            "sandbox_not_found",
            "file_not_found",
            "context_not_found",
            "process_not_found",
            "agent_run_not_found",
            "not_found",
        ],
        404,
    ),
    "method_not_allowed": 405,
    "path_conflict": 409,
    "no_pending_approval": 409,
    "context_lost": 410,
    "too_large": 413,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    **dict.fromkeys(
        [
            "limit_exceeded",
            "limit_below_minimum",
            "executor_not_allowed",
            "input_too_large",
            "invalid_batch",
            "invalid_sandbox",
            "invalid_model",
            "invalid_agent_run",
            "unsupported_language",
            "unsupported",
        ],
        422,
    ),
    "quota_exceeded": 429,
    "over_capacity": 429,
    "internal_error": 500,
    **dict.fromkeys(
        [
            "executor_unavailable",
            "runtime_unavailable",
            "sandbox_uids_exhausted",
            "sandboxes_unavailable",
            "not_ready",
        ],
        503,
    ),
}


def error_for(
    code: str,
    message: str,
    status: Optional[int] = None,
    retry_after: Optional[float] = None,
) -> APIError:
    """The exception for an error; by `status` when there is one, else by `code`."""
    if status == 429 or (status is None and _STATUS_OF_CODE.get(code) == 429):
        cls: type[APIError] = _BY_CODE_429.get(code, RateLimited)
    elif status is not None:
        cls = _BY_STATUS.get(status, APIError)
    else:
        cls = _BY_STATUS.get(_STATUS_OF_CODE.get(code, 0), APIError)
    return cls(code, message, status=status, retry_after=retry_after)


def error_from_body(
    body: Any, status: Optional[int] = None, retry_after: Optional[float] = None
) -> APIError:
    """The exception for an error body `{"error": {"code", "message"}}` (or anything else a
    proxy in between may have answered)."""
    detail = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping) and isinstance(detail.get("code"), str):
        return error_for(detail["code"], str(detail.get("message", "")), status, retry_after)
    text = body if isinstance(body, str) else repr(body)
    return error_for("unexpected_answer", f"HTTP {status}: {text[:500]}", status, retry_after)

"""A scripted OpenAI-compatible chat completions server on a loopback port, for the agent tests:
each `POST /v1/chat/completions` is answered with the next reply of the script, as JSON or, when
the request asks for `"stream": true`, as Server-Sent Events; every request body is recorded."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Union


class Hold:
    """A reply that waits until the server is closed (or `seconds` pass), then answers 500:
    a model that hangs, for cancelling runs."""

    def __init__(self, seconds: float = 60.0) -> None:
        self.seconds = seconds


Reply = Union[str, Hold]


class ScriptedOpenAI:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(body)
                    reply: Optional[Reply] = server.replies.pop(0) if server.replies else None
                if reply is None:
                    self._send(500, {"error": {"message": "the script has no more replies"}})
                elif isinstance(reply, Hold):
                    server._closed.wait(reply.seconds)
                    self._send(500, {"error": {"message": "held"}})
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._send(200, completion(body, reply))

            def _send(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], text: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()), "model": body["model"]}
                pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
                chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
                chunks += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
                chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if body.get("stream_options", {}).get("include_usage"):
                    chunks.append({"choices": [], "usage": usage(body, text)})
                for c in chunks:
                    self.wfile.write(f"data: {json.dumps({**base, **c})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """In the OpenAI SDK's convention, `/v1` included."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def user_texts(self, n: int) -> str:
        """Everything the n-th request sent that was not the assistant's own."""
        return "\n".join(
            str(msg.get("content")) for msg in self.requests[n]["messages"] if msg.get("role") != "assistant"
        )

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ScriptedOpenAI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4 + 1
    completion_tokens = len(text) // 4 + 1
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage(body, text),
    }

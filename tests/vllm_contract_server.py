"""A stand-in for vLLM's OpenAI-compatible ``/v1/completions`` that checks requests the way the
current vLLM does, for tests on machines without a GPU.

It rejects (400) legacy ``guided_*`` fields and unknown fields, requires
``structured_outputs.json`` to be a usable JSON schema, answers 404 for a model name it does not
serve (vLLM serves LoRA adapters under their own names), and returns ``n`` choices with a
``finish_reason``. Tests script misbehaviour per request: 500s, slow answers (timeouts),
truncated answers, invalid JSON, schema violations, whitespace runaways.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Request fields of vLLM's CompletionRequest that this project may send (a subset is enough).
KNOWN_FIELDS = {
    "model", "prompt", "n", "temperature", "top_p", "top_k", "seed", "max_tokens", "stop", "logprobs",
    "structured_outputs", "stream", "user", "min_tokens", "repetition_penalty",
}
STRUCTURED_OUTPUT_OPTIONS = {"json", "regex", "choice", "grammar", "json_object", "disable_any_whitespace",
                             "disable_additional_properties", "whitespace_pattern", "structural_tag"}


def schema_problem(schema: Any) -> str | None:
    """Enough of JSON Schema to catch a malformed or empty schema."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "schema must be an object schema"
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return "schema needs properties"
    for key, prop in props.items():
        if not isinstance(prop, dict) or not ({"type", "enum"} & set(prop)):
            return f"property {key} has no type"
    if not set(schema.get("required", [])) <= set(props):
        return "required names unknown properties"
    return None


class ContractServer:
    """Start with ``with ContractServer(...) as server``; ``server.url`` is the ``/v1`` base URL."""

    def __init__(self, served: tuple[str, ...] = ("cmrx-student",), answers: dict[str, Any] | None = None) -> None:
        self.served = set(served)
        self.answers = answers or {}  # key -> value the "model" answers (missing keys: null)
        self.category = "CAD"
        self.requests: list[dict[str, Any]] = []
        self.script: deque[str] = deque()  # per-request behaviour; empty = "ok"
        self.choice_script: deque[str] = deque()  # per-choice behaviour within an ok request
        self.delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ContractServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ---- answers ---------------------------------------------------------------------------

    def answer_text(self, schema: dict[str, Any]) -> str:
        data: dict[str, Any] = {}
        for key, prop in schema["properties"].items():
            data[key] = self.category if "enum" in prop else self.answers.get(key)
        return json.dumps(data, separators=(",", ":"))

    def choice(self, index: int, schema: dict[str, Any]) -> dict[str, Any]:
        behaviour = self.choice_script.popleft() if self.choice_script else "ok"
        text, finish = self.answer_text(schema), "stop"
        if behaviour == "length":
            text, finish = text[: len(text) // 2], "length"
        elif behaviour == "badjson":
            text = text[:-1] + ",}"
        elif behaviour == "schema":
            data = json.loads(text)
            data[next(iter(data))] = "not a number"
            text = json.dumps(data)
        elif behaviour == "whitespace":
            text = text[:-1] + " " * 40 + "}"
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}

    # ---- HTTP ------------------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                return

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _error(self, status: int, message: str) -> None:
                self._send(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    behaviour = server.script.popleft() if server.script else "ok"
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(body, behaviour)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any], behaviour: str) -> None:
                if self.path != "/v1/completions":
                    return self._error(404, f"no route {self.path}")
                if server.delay_s:
                    time.sleep(server.delay_s)
                if behaviour == "500":
                    return self._error(500, "engine died")
                if behaviour == "timeout":
                    time.sleep(2.0)
                    return self._error(500, "too late")
                legacy = sorted(k for k in body if k.startswith("guided_"))
                if legacy:
                    return self._error(400, f"legacy parameters are not supported: {legacy}")
                unknown = sorted(set(body) - KNOWN_FIELDS)
                if unknown:
                    return self._error(400, f"unknown fields: {unknown}")
                if body.get("model") not in server.served:
                    return self._error(404, f"The model `{body.get('model')}` does not exist.")
                if not isinstance(body.get("prompt"), str) or not body["prompt"]:
                    return self._error(400, "prompt must be a non-empty string")
                so = body.get("structured_outputs")
                if not isinstance(so, dict) or "json" not in so or set(so) - STRUCTURED_OUTPUT_OPTIONS:
                    return self._error(400, "structured_outputs.json is required (and only known options)")
                problem = schema_problem(so["json"])
                if problem:
                    return self._error(400, f"invalid JSON schema: {problem}")
                n = body.get("n", 1)
                if not isinstance(n, int) or n < 1:
                    return self._error(400, "n must be a positive integer")
                choices = [server.choice(i, so["json"]) for i in range(n)]
                self._send(200, {"id": "cmpl-test", "object": "text_completion", "model": body["model"],
                                 "choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

        return Handler

"""A loopback endpoint that speaks OpenAI's chat-completions API as `phi serve` does, and
records everything it is sent (method, path, query, headers, body).

Requests are checked by the server's own validator (jobs/score/openai_api.py): a field the
server does not take is refused with 400, a model it does not serve with 404, as `phi serve`
answers. Answers are whole `chat.completion`s in the server's shape, whose text is
"<n> messages; last: <last content>". Replies can be scripted per request; a bearer key, when
set, is checked first (401 in OpenAI's error shape otherwise).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support import ROOT, http_server, send_json

SERVED_MODEL = "phi"
CHAT_COMPLETIONS = "/v1/chat/completions"
Reply = tuple[int, dict[str, str], Any]


def server_api() -> Any:
    """jobs/score/openai_api.py, which imports its sibling `contract` as the scoring image
    does: from its own folder."""
    folder = str(ROOT / "jobs" / "score")
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module("openai_api")


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Each request: method, path, query (a dict), headers (names lower-cased) and body
    (parsed JSON, or None)."""
    script: list[Reply] = field(default_factory=list)
    """Replies to send first, in order; then the API's own answers."""
    key: str | None = None
    """When set, a request without `Authorization: Bearer <key>` gets 401."""

    def headers(self, index: int = 0) -> dict[str, str]:
        return dict(self.requests[index]["headers"])

    def body(self, index: int = 0) -> dict[str, Any]:
        return dict(self.requests[index]["body"])


@contextmanager
def openai_server(seen: Seen | None = None) -> Iterator[tuple[str, Seen]]:
    """The server's base URL (`http://127.0.0.1:PORT`, no path) and what it records."""
    state = seen or Seen()
    api = server_api()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, status: int, headers: dict[str, str], body: Any) -> None:
            send_json(self, status, headers, body)

        def record(self, raw: bytes) -> dict[str, Any]:
            url = urllib.parse.urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = None
            request = {
                "method": self.command,
                "path": url.path,
                "query": dict(urllib.parse.parse_qsl(url.query)),
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "body": body,
                "raw": raw.decode(errors="replace"),
            }
            state.requests.append(request)
            return request

        def refused(self) -> Reply | None:
            if state.script:
                return state.script.pop(0)
            if state.key is not None and self.headers.get("Authorization") != (
                f"Bearer {state.key}"
            ):
                message = "Incorrect API key provided."
                return 401, {}, api.error_body(message, 401, code="invalid_api_key")
            return None

        def do_GET(self) -> None:
            request = self.record(b"")
            reply = self.refused()
            if reply is None:
                if request["path"] == "/v1/models":
                    reply = 200, {}, api.models_list(SERVED_MODEL, int(time.time()))
                else:
                    reply = 404, {}, api.error_body(f"no route {request['path']}", 404)
            self.reply(*reply)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = self.record(raw)
            reply = self.refused()
            if reply is None:
                reply = self.chat_completion(request["path"], raw)
            self.reply(*reply)

        def chat_completion(self, path: str, raw: bytes) -> Reply:
            if path != CHAT_COMPLETIONS:
                return 404, {}, api.error_body(f"no route {path}", 404)
            try:
                parsed = api.parse_chat_request(raw, SERVED_MODEL)
            except ValueError as error:  # the server's ContractError
                status = int(getattr(error, "status", 400))
                body = api.error_body(
                    str(error), status, getattr(error, "param", None), getattr(error, "code", None)
                )
                return status, {}, body
            messages = parsed.messages
            text = f"{len(messages)} messages; last: {messages[-1]['content']}"
            choice = api.Choice(text=text, finish_reason="stop", tokens=5)
            return 200, {}, api.completion(SERVED_MODEL, 10, [choice])

    with http_server(Handler) as url:
        yield url, state

"""A local HTTP server that answers like Azure Resource Manager, for cleanup and preflight
tests.

It speaks the documented long-running-operation contract: a DELETE or POST answers 202
with an `Azure-AsyncOperation` (or `Location`) header, which is polled until it reports
`Succeeded`. A GET answers the document recorded for its path (shapes as Azure's REST
specifications' examples show them), or 404. Every request is recorded with its method,
path, query and auth header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.support import http_server


@dataclass
class Call:
    method: str
    path: str
    query: str
    authorization: str


@dataclass
class ArmState:
    calls: list[Call] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)
    """Paths that answer 404, as a resource that is already gone."""
    failing: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Paths that answer this status and error code."""
    polls_before_done: int = 1
    documents: dict[str, object] = field(default_factory=dict)
    """GET answers by path (a list's pages may link to further paths with `nextLink`), and
    the answers of POST actions such as listKeys."""
    redirects: dict[str, str] = field(default_factory=dict)
    """Paths that answer 302 to this location."""

    def resource_calls(self) -> list[tuple[str, str]]:
        return [
            (c.method, f"{c.path}?{c.query}")
            for c in self.calls
            if not c.path.startswith("/operations/")
        ]


@contextmanager
def arm_server() -> Iterator[tuple[str, ArmState]]:
    state = ArmState()
    pending: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(
            self, status: int, body: object | None = None, headers: dict[str, str] | None = None
        ) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            state.calls.append(
                Call(self.command, url.path, url.query, self.headers.get("Authorization", ""))
            )
            if url.path.startswith("/operations/"):
                left = pending.get(url.path, 0)
                if left > 0:
                    pending[url.path] = left - 1
                    self._answer(200, {"status": "InProgress"})
                else:
                    self._answer(200, {"status": "Succeeded"})
                return
            if url.path in state.missing:
                self._answer(404, {"error": {"code": "ResourceNotFound", "message": "gone"}})
                return
            if url.path in state.redirects:
                self._answer(302, {}, {"Location": state.redirects[url.path]})
                return
            if url.path in state.failing:
                status, code = state.failing[url.path]
                self._answer(status, {"error": {"code": code, "message": f"{code} for test"}})
                return
            if self.command == "POST" and url.path in state.documents:  # an action: listKeys
                self._answer(200, state.documents[url.path])
                return
            if self.command == "GET":
                found = url.path in state.documents
                document = state.documents.get(url.path)
                body = {"error": {"code": "NotFound", "message": "none"}}
                self._answer(200 if found else 404, document if found else body)
                return
            operation = f"/operations/{len(state.calls)}"
            pending[operation] = state.polls_before_done
            host = self.headers["Host"]
            self._answer(202, None, {"Azure-AsyncOperation": f"http://{host}{operation}"})

        do_DELETE = do_POST = do_GET = _handle  # noqa: N815 - http.server's naming

    with http_server(Handler) as url:
        yield url, state

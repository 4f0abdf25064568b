"""A local HTTP server that answers like Azure Resource Manager, for cleanup and preflight
tests.

It speaks the documented long-running-operation contract: a DELETE or POST answers 202
with an `Azure-AsyncOperation` header, which answers 200 `{"status": "InProgress"}` until it
reports `Succeeded` (what azure-core's ARM poller, and `ArmClient`, read). A GET answers the
document recorded for its path (shapes as Azure's REST specifications' examples show them),
or 404. Every request is recorded with its method, path, query and auth header.

`arm_session()` reaches it as `https://management.azure.com` itself, for clients (the Azure
SDKs) that refuse to send a bearer token over http or whose address cannot be changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from finetune_phi.core.arm import ARM_ENDPOINT
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
    address: str | None = None
    """The base URL its operation headers name; its own loopback one when None. `ARM_ENDPOINT`
    when it is reached through `arm_session()`, as the real service names itself."""
    refused: list[str] = field(default_factory=list)
    """URLs off ARM that a client on `arm_session()` tried to reach (and was refused)."""

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
            address = state.address or f"http://{self.headers['Host']}"
            self._answer(202, None, {"Azure-AsyncOperation": f"{address}{operation}"})

        do_DELETE = do_POST = do_GET = _handle  # noqa: N815 - http.server's naming

    with http_server(Handler) as url:
        yield url, state


class _ToStandIn(HTTPAdapter):
    """Sends what is addressed to ARM to the stand-in instead, and refuses (and records in
    `state.refused`) every other address: a test never reaches a real host."""

    def __init__(self, stand_in: str, state: ArmState) -> None:
        super().__init__()
        self.stand_in = stand_in
        self.state = state

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        url = request.url or ""
        if not url.startswith(f"{ARM_ENDPOINT}/"):
            self.state.refused.append(url)
            raise requests.ConnectionError(f"the test refused to reach {url}")
        request.url = f"{self.stand_in}{url.removeprefix(ARM_ENDPOINT)}"
        return super().send(request, *args, **kwargs)


def arm_session(stand_in: str, state: ArmState) -> requests.Session:
    """A session that sends `https://management.azure.com/...` to the stand-in at `stand_in`
    (which then names ARM in its operation headers) and refuses every other address."""
    state.address = ARM_ENDPOINT
    session = requests.Session()
    adapter = _ToStandIn(stand_in, state)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

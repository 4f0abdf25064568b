"""A loopback stand-in for Azure AI Content Safety's text analysis, and a managed-identity
token server, so that `phi data screen` is tested offline.

It speaks the documented contract of `POST {endpoint}/contentsafety/text:analyze?api-version=
2024-09-01` (azure-rest-api-specs specification/cognitiveservices/data-plane/ContentSafety/
stable/2024-09-01/contentsafety.json): a body `{"text", "categories", "outputType"}` with at
most 10,000 Unicode code points of text; an answer `{"blocklistsMatch": [], "categoriesAnalysis":
[{"category", "severity"}]}` with severities 0, 2, 4 or 6 (FourSeverityLevels); failures as
`{"error": {"code", "message"}}`. Its classifier is a word list (`WORDS`), so a test knows
what each line scores. It records every request with its Authorization header, and can be
told to throttle (429 with Retry-After), to refuse the token (401/403), to redirect, or to fail
after a number of answers (an interrupted screen).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from finetune_phi.core.azure_facts import CONTENT_SAFETY_REQUESTS_PER_SECOND
from tests.support import http_server

API_VERSION = "2024-09-01"
PATH = "/contentsafety/text:analyze"
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
MAX_TEXT = 10_000
TOKEN = "cs-test-token-3f9a1c"
S0_REQUESTS_PER_SECOND = f"{CONTENT_SAFETY_REQUESTS_PER_SECOND['S0']:g}"
"""The S0 tier's rate (the facts table's, 1,000 requests per 10 s), for `--rate` and
`--safety-rate`: the default (F0, 5 a second) spends seconds per test waiting on the stand-in;
its pacing has a test of its own."""
S0_RATE = ("--rate", S0_REQUESTS_PER_SECOND)
"""`phi data screen` at the S0 tier's rate."""
WORDS: dict[str, tuple[str, int]] = {
    "grimhate": ("Hate", 4),
    "bleakhate": ("Hate", 6),
    "selfhurt": ("SelfHarm", 6),
    "blush": ("Sexual", 2),
    "brawl": ("Violence", 4),
}
"""Word -> (category, severity) the stand-in gives a text containing it."""


def classify(text: str) -> dict[str, int]:
    scores = dict.fromkeys(CATEGORIES, 0)
    for word in text.lower().split():
        hit = WORDS.get(word.strip(".,!?"))
        if hit is not None:
            scores[hit[0]] = max(scores[hit[0]], hit[1])
    return scores


@dataclass
class Recorded:
    path: str
    authorization: str | None
    body: Any
    ok: bool = False
    """Whether it got an analysis."""


@dataclass
class ContentSafetyStandIn:
    """What the server does next, and what it was sent."""

    token: str = TOKEN
    requests: list[Recorded] = field(default_factory=list)
    throttle: list[str] = field(default_factory=list)
    """Retry-After values: each request answered 429 takes one."""
    refuse: int | None = None
    """401 or 403 for every request."""
    redirect_to: str | None = None
    fail_after: int | None = None
    """Answer 500 once this many analyses have succeeded."""
    answered: int = 0
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def analyzed(self) -> list[str]:
        """The texts that got an analysis, in order."""
        return [r.body["text"] for r in self.requests if r.ok]


def _handler(state: ContentSafetyStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(raw)

        def error(self, status: int, code: str, message: str, **headers: str) -> None:
            self.answer(status, {"error": {"code": code, "message": message}}, headers)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            record = Recorded(self.path, self.headers.get("Authorization"), body)
            with state.lock:
                state.requests.append(record)
                self.respond(record, body)

        def respond(self, record: Recorded, body: Any) -> None:
            url = urlsplit(self.path)
            if state.redirect_to is not None:
                self.send_response(307)
                self.send_header("Location", state.redirect_to + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if url.path != PATH:
                self.error(404, "NotFound", f"no operation at {url.path}")
                return
            if parse_qs(url.query).get("api-version") != [API_VERSION]:
                self.error(404, "ApiVersionNotSupported", "unsupported api-version")
                return
            if state.refuse is not None or record.authorization != f"Bearer {state.token}":
                status = state.refuse or 401
                code = "PermissionDenied" if status == 403 else "401"
                self.error(status, code, "Access denied due to invalid credentials or role.")
                return
            if state.throttle:
                wait = state.throttle.pop(0)
                self.error(
                    429, "TooManyRequests", "Rate limit is exceeded.", **{"Retry-After": wait}
                )
                return
            if state.fail_after is not None and state.answered >= state.fail_after:
                self.error(500, "InternalServerError", "the stand-in was told to fail")
                return
            if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                self.error(400, "InvalidRequestBody", "text is required")
                return
            text = body["text"]
            if len(text) > MAX_TEXT:
                self.error(400, "InvalidRequestBody", f"text is over {MAX_TEXT} characters")
                return
            categories = body.get("categories") or list(CATEGORIES)
            if (
                not set(categories) <= set(CATEGORIES)
                or body.get("outputType", "FourSeverityLevels") != "FourSeverityLevels"
            ):
                self.error(400, "InvalidRequestBody", "bad categories or outputType")
                return
            scores = classify(text)
            state.answered += 1
            record.ok = True
            self.answer(
                200,
                {
                    "blocklistsMatch": [],
                    "categoriesAnalysis": [
                        {"category": c, "severity": scores[c]} for c in categories
                    ],
                },
            )

    return Handler


@contextlib.contextmanager
def content_safety() -> Iterator[ContentSafetyStandIn]:
    """The stand-in on a free loopback port; `state.base_url` is its endpoint."""
    state = ContentSafetyStandIn()
    with http_server(_handler(state)) as url:
        state.base_url = url
        yield state


@dataclass
class TokenServer:
    """App Service's managed-identity endpoint, as azure-identity asks it when
    IDENTITY_ENDPOINT and IDENTITY_HEADER are set: hands out `TOKEN` for any resource."""

    url: str = ""
    resources: list[str] = field(default_factory=list)


@contextlib.contextmanager
def token_server(token: str = TOKEN) -> Iterator[TokenServer]:
    state = TokenServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            state.resources.extend(query.get("resource", []))
            raw = json.dumps(
                {
                    "access_token": token,
                    "expires_on": str(int(time.time()) + 3600),
                    "resource": query.get("resource", [""])[0],
                    "token_type": "Bearer",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    with http_server(Handler) as url:
        state.url = url
        yield state

"""A client of Azure AI Content Safety's text analysis, with the promises `phi` keeps for every
network call.

The contract (azure-rest-api-specs specification/cognitiveservices/data-plane/ContentSafety/
stable/2024-09-01/contentsafety.json, read 2026-12-05): `POST {endpoint}/contentsafety/
text:analyze?api-version=2024-09-01` with `{"text", "categories", "outputType":
"FourSeverityLevels"}`; the text holds at most 10,000 Unicode code points; the answer's
`categoriesAnalysis` is `[{"category", "severity"}]` with severities 0, 2, 4 or 6; failures are
`{"error": {"code", "message"}}`. Entra ID tokens are for the scope
`https://cognitiveservices.azure.com/.default`. The dated facts (version, route, scope, limit,
rate) live in src/finetune_phi/core/azure_facts.py with their sources; this module names them.

What it promises:
- the token goes to the endpoint's host only: a redirect is never followed but reported
  (http.client, not urllib, which re-sends Authorization to whatever host a 3xx names), and
  an http:// endpoint is accepted only on the loopback interface (a local stand-in);
- every request has its own timeout, held by a watchdog that closes the socket, and the whole
  screen one total deadline that 429's waits count against;
- 429 is retried after its Retry-After (capped), 503 with backoff, while the deadline allows;
- requests start no faster than the rate limit (`rate` per second);
- every failure is one PhiError line, with the token masked in any text it shows.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import ssl
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from finetune_phi.core.azure_facts import (
    CONTENT_SAFETY_ANALYZE_PATH,
    CONTENT_SAFETY_API_VERSION,
    CONTENT_SAFETY_MAX_TEXT,
    CONTENT_SAFETY_REQUESTS_PER_SECOND,
    CONTENT_SAFETY_SCOPE,
)
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.endpoint_client import post_within

API_VERSION = CONTENT_SAFETY_API_VERSION
PATH = CONTENT_SAFETY_ANALYZE_PATH
SCOPE = CONTENT_SAFETY_SCOPE
CATEGORIES = ("Hate", "SelfHarm", "Sexual", "Violence")
SEVERITIES = (0, 2, 4, 6)
"""FourSeverityLevels: safe, low, medium, high."""
MAX_TEXT = CONTENT_SAFETY_MAX_TEXT
"""Unicode code points of text in one request (azure_facts.CONTENT_SAFETY_MAX_TEXT)."""
DEFAULT_RATE = CONTENT_SAFETY_REQUESTS_PER_SECOND["F0"]
"""Requests a second: the F0 tier's limit for the moderation APIs, which every tier allows
(S0 allows 1000 per 10 seconds: azure_facts.CONTENT_SAFETY_REQUESTS_PER_SECOND). Raise it
with --rate on S0."""
RETRY_AFTER_CAP = 60.0
MAX_RESPONSE_BYTES = 1 << 20
LOOPBACK_NAMES = ("localhost",)


class TokenCredential(Protocol):
    """What azure-identity's credentials offer (azure.core.credentials.TokenCredential)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any: ...


def _loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_url(endpoint: str) -> urllib.parse.SplitResult:
    """The endpoint, checked: https (http only on loopback), a host, no path beyond "/", no
    query, no user information. UsageError naming the rule otherwise."""
    url = urllib.parse.urlsplit(endpoint.strip())
    problem = None
    if url.scheme not in ("https", "http") or not url.hostname:
        problem = "must be an https:// URL such as https://NAME.cognitiveservices.azure.com/"
    elif url.scheme == "http" and not _loopback(url.hostname):
        problem = "must be https:// (http:// is accepted on the loopback interface only)"
    elif url.username or url.password or url.query or url.fragment or url.path not in ("", "/"):
        problem = "must be the account's endpoint alone, with no path, query or user"
    if problem:
        raise UsageError(f"Content Safety endpoint {endpoint!r}: {problem}")
    return url


@dataclass
class ContentSafetyClient:
    endpoint: str
    credential: TokenCredential = field(repr=False)
    categories: Sequence[str] = CATEGORIES
    rate: float = DEFAULT_RATE
    """Most requests started a second."""
    request_timeout: float = 30.0
    """Seconds for one request: connecting, sending, waiting and reading."""
    deadline_seconds: float = 3600.0
    """Seconds for every request of this client together, retries and waits included."""
    retries: int = 5
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    sent: int = 0
    """Requests sent (attempts included)."""
    _url: urllib.parse.SplitResult = field(init=False, repr=False)
    _token: str | None = field(default=None, init=False, repr=False)
    _token_expires: float = field(default=0.0, init=False, repr=False)
    _deadline: float = field(default=0.0, init=False, repr=False)
    _next_start: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._url = endpoint_url(self.endpoint)
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate {self.rate}: must be a positive number of requests a second")
        self._deadline = self.clock() + self.deadline_seconds

    @property
    def analyze_url(self) -> str:
        return f"{self._url.scheme}://{self._url.netloc}{PATH}?api-version={API_VERSION}"

    def sign_in(self) -> None:
        """Fetch the token now, so that a missing sign-in fails before any work it would
        waste (azure-identity's error, which `phi` turns into one line)."""
        self._bearer()

    def _bearer(self) -> str:
        if self._token is None or time.time() > self._token_expires - 60:
            token = self.credential.get_token(SCOPE)
            self._token, self._token_expires = token.token, float(token.expires_on)
        assert self._token is not None
        return self._token

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def analyze(self, text: str) -> dict[str, int]:
        """Severity by category of one text (at most MAX_TEXT code points)."""
        if len(text) > MAX_TEXT:
            raise ValueError(f"a text of {len(text)} code points; split it to {MAX_TEXT}")
        body = json.dumps(
            {"text": text, "categories": list(self.categories), "outputType": "FourSeverityLevels"}
        ).encode()
        for attempt in range(self.retries + 1):
            self._wait_for_rate()
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {self._bearer()}",
            }
            status, answer_headers, raw = self._post(body, headers)
            self.sent += 1
            if status == 200:
                return self._severities(raw)
            if 300 <= status < 400:
                raise PhiError(
                    self._redact(
                        f"Content Safety answered a redirect (HTTP {status}) to "
                        f"{answer_headers.get('location', 'nowhere')}; not followed, so the token "
                        "goes to the endpoint's host only: check the endpoint"
                    )
                )
            if status in (429, 503) and attempt < self.retries:
                wait = _retry_wait(answer_headers.get("retry-after", ""), 2.0**attempt)
                if self.clock() + wait >= self._deadline:
                    raise PhiError(
                        f"Content Safety is throttling (HTTP {status}, retry after {wait:g} s) "
                        f"past the {self.deadline_seconds:g} s deadline; run the same command "
                        "again later: what was screened is cached"
                    )
                self.sleep(wait)
                continue
            raise PhiError(self._redact(_explain(status, raw)))
        raise AssertionError("unreachable")

    def _wait_for_rate(self) -> None:
        now = self.clock()
        if now < self._next_start:
            self.sleep(self._next_start - now)
            now = self._next_start
        self._next_start = now + 1.0 / self.rate

    def _severities(self, raw: bytes) -> dict[str, int]:
        try:
            answer = json.loads(raw)
            found = {
                str(item["category"]): int(item.get("severity") or 0)
                for item in answer["categoriesAnalysis"]
            }
        except (ValueError, KeyError, TypeError) as error:
            raise PhiError(
                f"Content Safety answered HTTP 200 without the documented analysis ({error!r})"
            ) from None
        missing = [category for category in self.categories if category not in found]
        if missing:
            raise PhiError(f"Content Safety's answer lacks the categories {', '.join(missing)}")
        return {category: found[category] for category in self.categories}

    def _post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One POST, cut off after request_timeout (or at the deadline, if sooner) wherever it
        is (`post_within`); each failure a PhiError."""
        limit = min(self.request_timeout, self._deadline - self.clock())
        late = PhiError(
            f"no answer from Content Safety at {self._url.netloc} within {limit:g} s"
            if limit > 0
            else f"the screen ran past its {self.deadline_seconds:g} s deadline; run it again "
            "to go on from where it stopped"
        )
        try:
            status, answer_headers, raw = post_within(
                urllib.parse.urlsplit(self.analyze_url), body, headers, limit, MAX_RESPONSE_BYTES
            )
        except TimeoutError:
            raise late from None
        except ssl.SSLError as error:
            raise PhiError(f"TLS with {self._url.hostname} failed: {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:
            raise PhiError(
                f"cannot reach Content Safety at {self._url.netloc} ({type(error).__name__}): "
                "check the endpoint and the network"
            ) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise PhiError(f"Content Safety's answer is over {MAX_RESPONSE_BYTES} bytes")
        return status, answer_headers, raw


def _retry_wait(retry_after: str, backoff: float) -> float:
    try:
        seconds = float(retry_after)
    except ValueError:
        return backoff
    return min(max(seconds, 0.0), RETRY_AFTER_CAP) if math.isfinite(seconds) else backoff


def _explain(status: int, raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    try:
        error = json.loads(text).get("error") or {}
        reason = f"{error.get('code', '?')}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        reason = " ".join(text.split())[:200] or "no details"
    if status in (401, 403):
        return (
            f"Content Safety refused the token (HTTP {status}, {reason}): the signed-in identity "
            "needs the Cognitive Services User role on the account (the stack grants it to the "
            "deploying user and the runtime identity; a new grant takes a few minutes)"
        )
    if status == 429:
        return (
            f"Content Safety is still throttling (HTTP 429, {reason}) after retrying: lower --rate"
        )
    return f"Content Safety answered HTTP {status} ({reason})"

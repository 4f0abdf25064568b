"""Just enough of Azure Resource Manager's REST protocol for cleanup and preflight: send a
request, follow a long-running operation to its end, read a resource or a paged list.

The bearer token goes to the ARM endpoint only: redirects are never followed, and every
request has a timeout. Callers build paths with `segment()`, which percent-encodes a name.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

GUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
"""A subscription (or tenant, principal) id as ARM writes it."""


ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"


class ArmError(RuntimeError):
    """An ARM request failed; the message names the step and Azure's error code."""


def segment(name: str) -> str:
    """A name as one path segment: nothing in it can climb or add to the path."""
    return urllib.parse.quote(name, safe="")


@dataclass
class ArmClient:
    session: requests.Session
    token: Callable[[], str]
    endpoint: str = ARM_ENDPOINT
    poll_seconds: float = 5.0
    timeout_seconds: float = 1800.0
    request_timeout_seconds: float = 60.0

    def _send(self, method: str, url: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        response = self.session.request(
            method,
            url,
            headers=headers,
            timeout=self.request_timeout_seconds,
            allow_redirects=False,
        )
        if 300 <= response.status_code < 400:
            raise ArmError(
                f"{method} {url}: Azure answered a redirect (HTTP {response.status_code}) to "
                f"{response.headers.get('Location', 'nowhere')}; not followed"
            )
        return response

    def run(self, step: Any) -> str:
        """Carry out `step` (description, method, path); returns "done" or "already gone"."""
        response = self._send(step.method, f"{self.endpoint}{step.path}")
        if response.status_code == 404:
            return "already gone"
        if response.status_code >= 400:
            raise ArmError(f"{step.description}: HTTP {response.status_code}: {reason(response)}")
        poll_url = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
        if response.status_code == 202 and poll_url:
            self._wait(step.description, poll_url)
        return "done"

    def _wait(self, description: str, url: str) -> None:
        deadline = time.monotonic() + self.timeout_seconds
        while time.monotonic() < deadline:
            response = self._send("GET", url)
            if response.status_code == 202:
                time.sleep(self.poll_seconds)
                continue
            if response.status_code >= 400:
                raise ArmError(f"{description}: HTTP {response.status_code}: {reason(response)}")
            status = (
                (response.json() or {}).get("status", "Succeeded") if response.text else "Succeeded"
            )
            if status == "Succeeded":
                return
            if status in ("Failed", "Canceled"):
                raise ArmError(f"{description}: operation {status}: {reason(response)}")
            time.sleep(self.poll_seconds)
        raise ArmError(f"{description}: not finished after {self.timeout_seconds:.0f} s")

    def get(self, path: str) -> Any:
        """The JSON of `GET path`, or None when it is 404."""
        response = self._send("GET", f"{self.endpoint}{path}")
        if response.status_code == 404:
            return None
        return _checked("GET", path, response).json()

    def post(self, path: str) -> Any:
        """The JSON answer of `POST path` (an action such as listKeys)."""
        return _checked("POST", path, self._send("POST", f"{self.endpoint}{path}")).json()

    def list(self, path: str, max_pages: int = 50) -> Iterator[Any]:
        """Every item of a paged list, following `nextLink` on the ARM endpoint."""
        url: str | None = f"{self.endpoint}{path}"
        for _ in range(max_pages):
            if url is None:
                return
            if not url.startswith(f"{self.endpoint}/"):
                raise ArmError(f"nextLink {url} leaves {self.endpoint}; not followed")
            page = _checked("GET", path, self._send("GET", url)).json()
            yield from page.get("value", [])
            url = page.get("nextLink")
        raise ArmError(f"GET {path}: more than {max_pages} pages")


def _checked(method: str, path: str, response: requests.Response) -> requests.Response:
    """The response, or ArmError naming the request and Azure's error."""
    if response.status_code >= 400:
        raise ArmError(f"{method} {path}: HTTP {response.status_code}: {reason(response)}")
    return response


def reason(response: requests.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ") or response.text
    except ValueError:
        return response.text[:300]

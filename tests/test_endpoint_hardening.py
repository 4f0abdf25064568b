"""The endpoint client against endpoints that misbehave: each case failed before (a key sent
to a redirect's host, a day's sleep, a dripping server, raw tracebacks) and is held here."""

from __future__ import annotations

import socket
import time

import pytest

from finetune_phi.endpoint_client import RETRY_AFTER_CAP, EndpointClient, EndpointError
from tests.contract_server import Recorded, contract_server
from tests.support import raw_server, read_request

KEY = "k3y-that-must-stay-home-7f2a"
QUESTION = [{"role": "user", "content": "q"}]


def reply(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "303 See Other"])
def test_a_redirect_is_reported_and_the_key_never_leaves_the_scoring_host(status: str) -> None:
    with contract_server(Recorded()) as (elsewhere, seen):

        def redirect(connection: socket.socket) -> None:
            read_request(connection)
            connection.sendall(reply(status, {"Location": elsewhere}, b""))
            connection.close()

        with raw_server(redirect) as uri, pytest.raises(EndpointError) as caught:
            EndpointClient(uri, key=KEY, timeout=10).chat(QUESTION)
    assert seen.requests == []
    message = str(caught.value)
    assert f"redirect (HTTP {status.split()[0]}) to {elsewhere}; not followed" in message
    assert KEY not in message


def test_one_deadline_holds_against_a_server_that_drips_its_answer() -> None:
    def drip(connection: socket.socket) -> None:
        read_request(connection)
        body = b'{"output": "' + b"x" * 200 + b'"}'
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for byte in body:
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.05)

    with raw_server(drip) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError, match=r"no answer within 1\.5 s"):
            EndpointClient(uri, timeout=1.5).chat(QUESTION)
        assert time.monotonic() - started < 4


def test_a_server_that_never_answers_is_cut_off_at_the_deadline() -> None:
    def silent(connection: socket.socket) -> None:
        read_request(connection)
        time.sleep(5)

    with raw_server(silent) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError, match=r"no answer within 1 s"):
            EndpointClient(uri, timeout=1).chat(QUESTION)
        assert time.monotonic() - started < 3


def test_retry_after_is_capped_and_a_wait_past_the_deadline_fails_at_once() -> None:
    slept: list[float] = []

    def busy(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(reply("429 Too Many Requests", {"Retry-After": "86400"}, b"{}"))
        connection.close()

    with raw_server(busy) as uri:
        started = time.monotonic()
        with pytest.raises(EndpointError) as caught:
            EndpointClient(uri, timeout=120, sleep=slept.append).chat(QUESTION)
    assert time.monotonic() - started < 5
    assert slept == [RETRY_AFTER_CAP] * 3  # honoured, but never more than the cap
    assert "too many requests (HTTP 429)" in str(caught.value)
    with raw_server(busy) as uri, pytest.raises(EndpointError) as caught:
        EndpointClient(uri, timeout=10, sleep=slept.append).chat(QUESTION)
    assert f"asked to retry after {RETRY_AFTER_CAP:g} s, past the 10 s deadline" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("reset", "closed the connection"),
        ("hang up", "closed the connection"),
        ("not json", "answered HTTP 200 without JSON: 'Service Unavailable page'"),
    ],
)
def test_transport_and_parse_failures_are_the_clients_own_errors(
    behaviour: str, message: str
) -> None:
    def misbehave(connection: socket.socket) -> None:
        read_request(connection)
        if behaviour == "reset":
            connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        elif behaviour == "not json":
            connection.sendall(
                reply("200 OK", {"Content-Type": "text/html"}, b"Service Unavailable page")
            )
        connection.close()

    with raw_server(misbehave) as uri, pytest.raises(EndpointError, match=message):
        EndpointClient(uri, timeout=10).chat(QUESTION)


def test_an_error_page_that_echoes_the_request_never_shows_the_key() -> None:
    def echo(connection: socket.socket) -> None:
        request = read_request(connection)
        connection.sendall(reply("400 Bad Request", {"Content-Type": "text/plain"}, request))
        connection.close()

    with raw_server(echo) as uri, pytest.raises(EndpointError) as caught:
        EndpointClient(uri, key=KEY, timeout=10).chat(QUESTION)
    assert "Authorization: Bearer ***" in str(caught.value)
    assert KEY not in str(caught.value)


def test_only_http_urls_are_called() -> None:
    with pytest.raises(EndpointError, match="must be an http"):
        EndpointClient("file:///etc/passwd", key=KEY).chat(QUESTION)

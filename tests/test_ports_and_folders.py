"""Ports and work folders are checked before any work: `phi serve` and `phi rehearse` refuse
a port out of range or held by another program (naming it) and a folder they cannot write,
in one line; and the rehearsal talks only to the server it started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from finetune_phi.local.rehearse import Rehearsal, RehearsalError
from finetune_phi.local.serve import listening_process
from tests.support import PHI, http_server, no_process_mentions


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port this test process listens on, as another program would."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def phi(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PHI, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("phi: error: ")
    return line


@pytest.mark.parametrize("command", ["serve", "rehearse"])
def test_a_busy_port_is_refused_before_any_work_naming_what_holds_it(
    command: str, held_port: int, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    work = tmp_path / "work"
    args = ["--model", str(model)] if command == "serve" else ["--work-dir", str(work)]
    line = one_line(phi(command, *args, "--port", str(held_port), cwd=tmp_path))
    assert f"--port {held_port}: cannot listen on 127.0.0.1: Address already in use" in line
    assert f"held by process {os.getpid()}: {sys.executable}" in line
    assert not work.exists()  # nothing was started or written


@pytest.mark.parametrize("command", ["serve", "rehearse"])
def test_a_port_out_of_range_is_refused_before_any_work(command: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    work = tmp_path / "work"
    args = ["--model", str(model)] if command == "serve" else ["--work-dir", str(work)]
    line = one_line(phi(command, *args, "--port", "99999", cwd=tmp_path))
    assert line == "phi: error: --port 99999: must be between 1 and 65535"
    assert not work.exists()


@pytest.mark.parametrize(
    ("work_dir", "reason"),
    [("/proc/nope", "No such file or directory"), ("file/sub", "Not a directory")],
)
def test_a_work_folder_that_cannot_be_written_is_one_line(
    work_dir: str, reason: str, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("mine")
    line = one_line(phi("rehearse", "--work-dir", work_dir, cwd=tmp_path))
    assert "--work-dir " in line
    assert f"cannot write there ({reason})" in line
    assert (tmp_path / "file").read_text() == "mine"


def test_the_rehearsal_refuses_a_server_it_did_not_start(tmp_path: Path) -> None:
    """Another program answers on the port (taken after the rehearsal checked it): its
    health answer must not pass for the rehearsal's own server."""

    class Stranger(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    (tmp_path / "logs").mkdir()
    with http_server(Stranger) as url:
        port = int(url.rsplit(":", 1)[1])
        assert listening_process(port) == os.getpid()
        rehearsal = Rehearsal(tmp_path, port)
        try:
            with pytest.raises(RehearsalError, match=rf"port {port} answers, but from process"):
                rehearsal.start_server(tmp_path / "no-model")
        finally:
            rehearsal.stop_server()
    assert no_process_mentions(str(tmp_path / "no-model"))

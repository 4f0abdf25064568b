"""`phi serve`: the scoring server Azure ML runs, on this machine, on an MLflow model folder;
and the helpers that start, probe and talk to it (the rehearsal and the tests use them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from flow.endpoint_client import EndpointClient
from jobs.errors import PhiError, UsageError
from jobs.local.processes import run_in_group
from jobs.uploads import SCORE_SERVER_ENVIRONMENT, SCORE_SOURCE

SCORE_SCRIPT = SCORE_SOURCE / "score.py"


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def server_command(port: int, host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable, "-m", "jobs.local.inference_server", host,
        "--entry_script", str(SCORE_SCRIPT), "--port", str(port),
    ]  # fmt: skip


def server_environment(model: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AZUREML_MODEL_DIR": str(model.resolve()),
        "HF_HUB_OFFLINE": "1",
        **SCORE_SERVER_ENVIRONMENT,
    }


def serve(model: Path, port: int, host: str = "127.0.0.1") -> int:
    """Run the server in the foreground until it stops; Ctrl-C or SIGTERM stops it and its
    workers."""
    if not any(model.glob("MLmodel")) and not any(model.glob("*/MLmodel")):
        raise UsageError(
            f"--model {model}: no MLmodel file here (`phi train --local --output-dir DIR` writes DIR/model)"
        )
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 1 and 65535")
    if host not in LOOPBACK:
        print(
            f"phi serve: warning: listening on {host}: the local server checks no key, so "
            "anyone who can reach this machine can use the model",
            file=sys.stderr,
        )
    return run_in_group(server_command(port, host), server_environment(model))


def free_port() -> int:
    """A port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_healthy(process: subprocess.Popen[bytes], url: str, seconds: float) -> None:
    """Poll `GET url` until it answers 200 (the model is loaded); PhiError if the
    server exits first or is not healthy within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PhiError(f"phi serve exited with {process.returncode} during start-up")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own local server
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise PhiError(f"phi serve was not healthy within {seconds:g} s")


def local_client(url: str, api: str = "score") -> EndpointClient:
    """A local server with no key: `phi serve` (`http://127.0.0.1:5001` or its `/score`
    URL), or with api chat-completions, the full `/chat/completions` URL."""
    url = url.rstrip("/")
    if api == "score" and not url.endswith("/score"):
        url = f"{url}/score"
    return EndpointClient(url, api=api)

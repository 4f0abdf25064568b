"""`phi serve`: a serving engine (finetune_phi.serving) on this machine, on an MLflow model
folder; and the helpers that start, probe and talk to it (the rehearsal and the tests use them)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.endpoint_client import EndpointClient
from finetune_phi.local.processes import run_in_group
from finetune_phi.serving import DEFAULT_ENGINE, ENGINES
from finetune_phi.serving.engine import CHAT_COMPLETIONS_PATH

LOOPBACK = ("127.0.0.1", "localhost", "::1")
URL_API = "chat-completions"
"""The contract a server named by its URL speaks unless told: OpenAI's, as `phi serve` does
on every engine, and vLLM, Foundry and Azure OpenAI do."""


def server_command(port: int, host: str = "127.0.0.1", engine: str = DEFAULT_ENGINE) -> list[str]:
    return ENGINES[engine].local.command(host, port)


def server_environment(model: Path, engine: str = DEFAULT_ENGINE) -> dict[str, str]:
    """This process's environment, plus the model folder where a managed deployment has it."""
    return {
        **os.environ,
        "AZUREML_MODEL_DIR": str(model.resolve()),
        "HF_HUB_OFFLINE": "1",
        **ENGINES[engine].local.environment,
    }


def serve(model: Path, port: int, host: str = "127.0.0.1", engine: str = DEFAULT_ENGINE) -> int:
    """Run the engine's server in the foreground until it stops; Ctrl-C or SIGTERM stops it
    and its workers."""
    if not any(model.glob("MLmodel")) and not any(model.glob("*/MLmodel")):
        raise UsageError(
            f"--model {model}: no MLmodel file here (`phi train --local --output-dir DIR` writes DIR/model)"
        )
    check_port(port, host)
    if host not in LOOPBACK:
        print(
            f"phi serve: warning: listening on {host}: the local server checks no key, so "
            "anyone who can reach this machine can use the model",
            file=sys.stderr,
        )
    command = server_command(port, host, engine)  # names a missing engine before the banner
    spec = ENGINES[engine]
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    routes = "; ".join(f"{api} at {base}{path}" for api, path in spec.local.routes.items())
    print(
        f"phi serve: engine {spec.name} on {base}: ready once GET {spec.local.ready_path} "
        f"answers 200; {routes}",
        file=sys.stderr,
    )
    return run_in_group(command, server_environment(model, engine))


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """UsageError unless a server could listen on `port` now: in range, and not held by
    another program (named, where this system lets us see it)."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: must be between 1 and 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as error:
            holder = listening_process(port)
            held = f" (held by process {holder}: {process_name(holder)})" if holder else ""
            raise UsageError(
                f"--port {port}: cannot listen on {host}: {error.strerror}{held}; "
                "pass another --port"
            ) from None


def listening_process(port: int) -> int | None:
    """The process listening on TCP `port`, from Linux's /proc; None where that cannot be
    seen (another user's process, another system)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{inode}]")
    for fd in Path("/proc").glob("[0-9]*/fd/*") if inodes else ():
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                return int(fd.parts[2])
    return None


def process_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(w.decode(errors="replace") for w in words if w)[:80]
    return "unknown"


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


def local_client(url: str, api: str | None = None) -> EndpointClient:
    """A server with no key, by its base URL (`http://127.0.0.1:5001`, or an OpenAI base URL
    ending in `/v1`) or its full route URL (`.../v1/chat/completions`, `.../score`). Without
    `api`, a `/score` URL speaks the scoring contract, any other chat completions."""
    url = url.rstrip("/")
    api = api or ("score" if url.endswith("/score") else URL_API)
    if api == "score" and not url.endswith("/score"):
        url = f"{url}/score"
    elif api == "chat-completions" and not url.endswith("/chat/completions"):
        url = f"{url}/chat/completions" if url.endswith("/v1") else f"{url}{CHAT_COMPLETIONS_PATH}"
    return EndpointClient(url, api=api)

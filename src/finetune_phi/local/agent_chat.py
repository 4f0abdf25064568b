"""The Agent Framework chat (`flow/agent/chat.py`) run from `phi`: it lives in its own
environment (`.venv-agent`), so it runs as a process of that environment's Python, and is
handed the endpoint as its connection (PHI_ENDPOINT_URL, PHI_ENDPOINT_KEY, PHI_ENDPOINT_API)
in the child's environment only: never on its command line, in a file or in a log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.folders import AGENT_CHAT
from finetune_phi.endpoint_client import EndpointClient

AGENT_PYTHON_VARIABLE = "PHI_AGENT_PYTHON"
CHECKOUT_AGENT_PYTHON = AGENT_CHAT.parents[2] / ".venv-agent" / "bin" / "python"


def agent_python() -> Path | None:
    """The Python of the Agent Framework environment: $PHI_AGENT_PYTHON, or the checkout's
    .venv-agent; None when there is none."""
    given = os.environ.get(AGENT_PYTHON_VARIABLE)
    candidate = Path(given) if given else CHECKOUT_AGENT_PYTHON
    return candidate if candidate.is_file() else None


def connection_environment(client: EndpointClient) -> dict[str, str]:
    """The endpoint as the chat's connection variables."""
    variables = {"PHI_ENDPOINT_URL": client.scoring_uri, "PHI_ENDPOINT_API": client.api}
    if client.key:
        variables["PHI_ENDPOINT_KEY"] = client.key
    return variables


def ask(
    client: EndpointClient,
    question: str,
    chat_history: list[Any] | None = None,
    temperature: float | None = None,
) -> str:
    """The Agent Framework chat's answer to one question, through `client`'s endpoint."""
    python = agent_python()
    if python is None:
        raise UsageError(
            f"no Agent Framework environment: run `make venv-agent` in the checkout, or set "
            f"${AGENT_PYTHON_VARIABLE} to its Python"
        )
    command = [str(python), str(AGENT_CHAT), "--question", question, "--json"]
    command += ["--chat-history", json.dumps(chat_history or [])]
    if temperature is not None:
        command += ["--temperature", str(temperature)]
    result = subprocess.run(
        command,
        env={**os.environ, **connection_environment(client)},
        capture_output=True,
        text=True,
        timeout=client.timeout + 60,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no error message"]
        message = lines[-1].removeprefix("chat.py: error: ")
        raise (UsageError if result.returncode == 2 else PhiError)(
            f"Agent Framework chat: {message}"
        )
    return str(json.loads(result.stdout)["answer"])

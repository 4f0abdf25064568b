"""The Hugging Face hub, as `phi` uses it before a download: reachable in seconds or a clear
error naming the offline way, instead of a minute of retries and a traceback."""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path

from finetune_phi.core.errors import PhiError, UsageError

PROBE_SECONDS = 5.0


def is_local(name: str) -> bool:
    return Path(name).expanduser().exists()


def require(name: str, flag: str, local_alternative: str) -> None:
    """Fail fast unless `name` is a local path, the hub is offline by choice (cached files
    are used), or the hub's host answers within PROBE_SECONDS."""
    if is_local(name) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            return
    except OSError as error:  # a service out of reach is a run-time failure, as Azure's
        raise PhiError(
            f"{flag} {name}: cannot reach the Hugging Face hub at {host}:{port} "
            f"({type(error).__name__}); work offline with {local_alternative}, or set "
            "HF_HUB_OFFLINE=1 to use what is already cached"
        ) from None


def offline_failure(name: str, flag: str, local_alternative: str, error: Exception) -> UsageError:
    """A hub library's failure to find `name` offline or at all, as one clear line."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return UsageError(
        f"{flag} {name}: not available ({reason}); use {local_alternative}, or unset "
        "HF_HUB_OFFLINE where the hub can be reached"
    )

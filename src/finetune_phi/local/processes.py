"""Child processes that stop with their parent: each runs in its own process group, and
SIGINT or SIGTERM to `phi` stops the whole group (a server's workers, torchrun's ranks)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_group(process: subprocess.Popen[Any], grace_seconds: float = 30) -> None:
    """SIGTERM to the process's group, then SIGKILL if it has not ended in time."""
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of an ended leader
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether `ancestor` started `pid`, directly or through its children (Linux's /proc);
    True where that cannot be seen."""
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (name) state": the parent
    return False


def run_in_group(
    command: Sequence[str], env: Mapping[str, str] | None = None, grace_seconds: float = 30
) -> int:
    """Run `command` in its own process group until it ends. SIGINT or SIGTERM sends SIGTERM
    to the group, and SIGKILL after `grace_seconds`; nothing of the group outlives this call.
    Returns the exit code (128 + the signal when a signal ended it)."""
    process = subprocess.Popen(
        list(command), env=dict(env) if env is not None else None, start_new_session=True
    )
    stop_asked: list[float] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        # Only signals here: waiting inside a handler would deadlock with the loop below.
        stop_asked.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        while (code := process.poll()) is None:
            if stop_asked and time.monotonic() - stop_asked[0] > grace_seconds:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_group(process, grace_seconds=10)
    return 128 - code if code < 0 else code

"""What one `phi` command leaves for the next, per workspace: the last fine-tune job
(`phi deploy` defaults to it), the managed deployment that has the traffic with its serving
engine (clients speak that engine's contract), and the serverless endpoint (`phi chat`
finds it).

Kept in `.phi/state.json` under the current directory (or $PHI_STATE_DIR). Every update is
a read-modify-write under an exclusive file lock (`filelock`: flock on POSIX, msvcrt on
Windows), written atomically, so parallel commands never lose each other's records and an
interrupted one never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from finetune_phi.core.errors import UsageError

LAST_FINETUNE_JOB = "last_finetune_job"
LIVE_DEPLOYMENT = "managed_deployment"
SERVERLESS_ENDPOINT = "serverless_endpoint"
WAIT_SECONDS = 60.0
"""How long `locked()` waits for another command's lock: a record holds it for milliseconds."""


def state_dir() -> Path:
    return Path(os.environ.get("PHI_STATE_DIR", ".phi"))


def state_file() -> Path:
    return state_dir() / "state.json"


@contextlib.contextmanager
def locked(name: str, *, wait: bool = True) -> Iterator[None]:
    """An exclusive lock on `.phi/<name>.lock`, held for the block (and released if the
    process dies). A lock another process holds is a UsageError: at once without `wait`,
    after WAIT_SECONDS with it."""
    path = state_dir() / f"{name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unusable(path.parent, error) from None
    lock = FileLock(path, timeout=WAIT_SECONDS if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        raise UsageError(f"another phi command holds {path}; wait for it to finish") from None
    except OSError as error:
        raise _unusable(path, error) from None
    try:
        yield
    finally:
        lock.release()


def _unusable(path: Path, error: OSError) -> UsageError:
    """A state path phi cannot use (a folder where its file belongs, a file where its folder
    does, no permission): one line naming it and what to do; nothing is removed."""
    if isinstance(error, IsADirectoryError):
        reason = "it is a folder; phi keeps a file there"
    elif isinstance(error, FileExistsError | NotADirectoryError):
        path, reason = (
            state_dir(),
            "it, or a folder above it, is a file; phi keeps its records in a folder there",
        )
    else:
        reason = error.strerror or type(error).__name__
    return UsageError(
        f"{path}: phi cannot keep its records there ({reason}): move it aside, or set "
        "PHI_STATE_DIR to another folder"
    )


def _load(path: Path) -> dict[str, Any]:
    """The records, never lost silently: a state file phi cannot read or parse is a
    UsageError naming it, and nothing is written over it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        raise UsageError(
            f"{path} is not valid JSON: fix it, or delete it to forget the recorded jobs and "
            "endpoints (pass --job to phi deploy then)"
        ) from None
    except OSError as error:
        raise _unusable(path, error) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object: fix it, or delete it")
    return data


def record(workspace: str, key: str, value: Any) -> Path:
    path = state_file()
    with locked("state"):
        data = _load(path)
        entry = data.setdefault(workspace, {})
        if not isinstance(entry, dict):
            raise UsageError(
                f"{path}: the entry {json.dumps(workspace)} must be a JSON object: fix it, or "
                "delete it"
            )
        entry[key] = value
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=2)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return path


def recall(workspace: str, key: str) -> Any:
    entry = _load(state_file()).get(workspace, {})
    return entry.get(key) if isinstance(entry, dict) else None

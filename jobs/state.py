"""What one `phi` command leaves for the next, per workspace: the last fine-tune job
(`phi deploy` defaults to it) and the serverless endpoint (`phi chat` finds it).

Kept in `.phi/state.json` under the current directory (or $PHI_STATE_DIR). Every update is
a read-modify-write under an exclusive file lock, written atomically, so parallel commands
never lose each other's records and an interrupted one never leaves half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs.errors import UsageError

LAST_FINETUNE_JOB = "last_finetune_job"
SERVERLESS_ENDPOINT = "serverless_endpoint"


def state_dir() -> Path:
    return Path(os.environ.get("PHI_STATE_DIR", ".phi"))


def state_file() -> Path:
    return state_dir() / "state.json"


@contextlib.contextmanager
def locked(name: str, *, wait: bool = True) -> Iterator[None]:
    """An exclusive lock on `.phi/<name>.lock`, held for the block (and released if the
    process dies). Without `wait`, a lock another process holds is a UsageError at once."""
    path = state_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise UsageError(f"another phi command holds {path}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError):
        raise UsageError(
            f"{path} is not valid JSON: fix it, or delete it to forget the recorded jobs and "
            "endpoints (pass --job to phi deploy then)"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object: fix it, or delete it")
    return data


def record(workspace: str, key: str, value: Any) -> Path:
    path = state_file()
    with locked("state"):
        data = _load(path)
        data.setdefault(workspace, {})[key] = value
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

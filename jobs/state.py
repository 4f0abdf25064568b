"""What one `phi` command leaves for the next, per workspace: the last fine-tune job
(`phi deploy` defaults to it) and the serverless endpoint (`phi chat` finds it).

Kept in `.phi/state.json` under the current directory (or $PHI_STATE_DIR), written
atomically so an interrupted command never leaves it half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

LAST_FINETUNE_JOB = "last_finetune_job"
SERVERLESS_ENDPOINT = "serverless_endpoint"


def state_file() -> Path:
    return Path(os.environ.get("PHI_STATE_DIR", ".phi")) / "state.json"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def record(workspace: str, key: str, value: Any) -> Path:
    path = state_file()
    data = _load(path)
    data.setdefault(workspace, {})[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".state.")
    with os.fdopen(handle, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(temporary, path)
    return path


def recall(workspace: str, key: str) -> Any:
    return _load(state_file()).get(workspace, {}).get(key)

"""`phi serve`: the scoring server Azure ML runs, on this machine, on an MLflow model folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCORE_SCRIPT = Path(__file__).resolve().parent / "score" / "score.py"


class ServeError(ValueError):
    pass


def server_command(port: int) -> list[str]:
    return [
        sys.executable, "-m", "azureml_inference_server_http",
        "--entry_script", str(SCORE_SCRIPT), "--port", str(port),
    ]  # fmt: skip


def serve(model: Path, port: int) -> int:
    """Run the server in the foreground until it stops (Ctrl-C)."""
    if not any(model.glob("MLmodel")) and not any(model.glob("*/MLmodel")):
        raise ServeError(
            f"--model {model}: no MLmodel file here (`phi train --local --output-dir DIR` writes DIR/model)"
        )
    if not 1 <= port <= 65535:
        raise ServeError(f"--port {port}: must be between 1 and 65535")
    env = {**os.environ, "AZUREML_MODEL_DIR": str(model.resolve()), "HF_HUB_OFFLINE": "1"}
    try:
        return subprocess.run(server_command(port), env=env, check=False).returncode
    except KeyboardInterrupt:
        return 0

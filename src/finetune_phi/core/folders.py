"""The folders that travel with `phi`: `jobs/` (what Azure ML uploads and runs) and `flow/`
(the chat flows).

They sit at the top of the repository, each self-contained: nothing in them is imported from
here, Azure ML and Prompt flow run them on their own. A checkout uses them where they are; the
wheel carries copies inside this package (`pyproject.toml` maps them), so `phi` finds them from
any folder either way.

- `jobs/train/src/`: the fine-tune job's code (`train.py`, `hyperparameters.yaml`, `fsdp.json`),
  `jobs/train/environment/requirements.txt` its environment;
- `jobs/score/`: a managed deployment's code (`score.py`, the scoring `contract.py`),
  `jobs/score/environment/requirements.txt` its environment;
- `flow/promptflow/`: the Prompt flow chat flow; `flow/agent/`: the same chat on Microsoft
  Agent Framework.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def _top_level(name: str) -> Path:
    """The wheel's copy of a top-level folder, or the checkout's own."""
    inside = _PACKAGE / name
    return inside if inside.is_dir() else _PACKAGE.parents[1] / name


JOBS = _top_level("jobs")
TRAIN_SOURCE = JOBS / "train" / "src"
TRAIN_HYPERPARAMETERS = TRAIN_SOURCE / "hyperparameters.yaml"
TRAIN_FSDP_CONFIG = TRAIN_SOURCE / "fsdp.json"
"""The Trainer's FSDP settings (FSDP2, full state dict, activation checkpointing)."""
TRAIN_REQUIREMENTS = JOBS / "train" / "environment" / "requirements.txt"
SCORE_SOURCE = JOBS / "score"
SCORE_REQUIREMENTS = SCORE_SOURCE / "environment" / "requirements.txt"
SERVING_FRONT = SCORE_SOURCE / "server.py"
"""`phi serve`'s HTTP front, OpenAI's chat completions on every engine."""
SCORE_SERVER_ENVIRONMENT = {"GUNICORN_CMD_ARGS": "--threads 4"}
"""How the inference server runs score.py, locally and in a managed deployment: gunicorn reads
its settings from this variable, and more than one thread makes its worker gthread, so health
probes and other clients are answered while one request generates, and a client that sends
half a request holds one thread, not the server."""

FLOWS = _top_level("flow")
PROMPT_FLOW = FLOWS / "promptflow"
"""The Prompt flow folder (flow.dag.yaml and its tool)."""
AGENT_CHAT = FLOWS / "agent" / "chat.py"
"""The same chat on Microsoft Agent Framework, run in its own environment (`.venv-agent`)."""

VLLM_ENVIRONMENT = _PACKAGE.parents[1] / ".venv-vllm"
"""A checkout's vLLM environment (`make venv-vllm`: the community CPU build, for offline tests
and CPU machines); absent from a wheel's install."""

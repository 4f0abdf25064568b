"""The folders Azure ML uploads, shipped as package data and kept self-contained:

- `train/src/` is the fine-tune job's code (`train.py`, `hyperparameters.yaml`, `fsdp.json`);
  `train/environment/requirements.txt` its environment;
- `score/` is a managed deployment's code (`score.py`, the scoring `contract.py`);
  `score/environment/requirements.txt` its environment.

Nothing in them imports from `jobs`: Azure ML runs them on their own."""

from pathlib import Path

UPLOADS = Path(__file__).resolve().parent
TRAIN_SOURCE = UPLOADS / "train" / "src"
TRAIN_HYPERPARAMETERS = TRAIN_SOURCE / "hyperparameters.yaml"
TRAIN_FSDP_CONFIG = TRAIN_SOURCE / "fsdp.json"
"""The Trainer's FSDP settings (FSDP2, full state dict, activation checkpointing)."""
TRAIN_REQUIREMENTS = UPLOADS / "train" / "environment" / "requirements.txt"
SCORE_SOURCE = UPLOADS / "score"
SCORE_REQUIREMENTS = SCORE_SOURCE / "environment" / "requirements.txt"
SCORE_SERVER_ENVIRONMENT = {"GUNICORN_CMD_ARGS": "--threads 4"}
"""How the inference server runs score.py, locally and in a managed deployment: gunicorn reads
its settings from this variable, and more than one thread makes its worker gthread, so health
probes and other clients are answered while one request generates, and a client that sends
half a request holds one thread, not the server."""

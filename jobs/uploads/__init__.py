"""The folders Azure ML uploads, shipped as package data and kept self-contained:

- `train/src/` is the fine-tune job's code (`train.py`, `hyperparameters.yaml`);
  `train/environment/requirements.txt` its environment;
- `score/` is a managed deployment's code (`score.py`, the scoring `contract.py`);
  `score/environment/requirements.txt` its environment.

Nothing in them imports from `jobs`: Azure ML runs them on their own."""

from pathlib import Path

UPLOADS = Path(__file__).resolve().parent
TRAIN_SOURCE = UPLOADS / "train" / "src"
TRAIN_HYPERPARAMETERS = TRAIN_SOURCE / "hyperparameters.yaml"
TRAIN_REQUIREMENTS = UPLOADS / "train" / "environment" / "requirements.txt"
SCORE_SOURCE = UPLOADS / "score"
SCORE_REQUIREMENTS = SCORE_SOURCE / "environment" / "requirements.txt"

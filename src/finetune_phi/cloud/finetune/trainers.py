"""The trainers the training script runs (`--trainer`): supervised fine-tuning on chat data
(TRL's SFTTrainer) or direct preference optimization on chosen/rejected pairs (TRL's
DPOTrainer). Each one names the data it reads, checked row by row with `phi data validate`'s
rules before anything runs or is uploaded, its hyperparameters file next to the script, and
the name its data assets take. Which fine-tuning method runs which trainer is the method's
own declaration (`FinetuneMethod.trainers`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import TRAIN_HYPERPARAMETERS, TRAIN_SOURCE
from finetune_phi.data import chat_format, preference_format

SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Trainer:
    name: str
    """`--trainer NAME`, in phi and in the training script alike."""
    help: str
    task: str
    """The data it trains on: one of `preference_format.TASKS`."""
    row_problems: Callable[[Any], list[str]]
    """`phi data validate`'s rules for one row of that data."""
    hyperparameters: Path
    """Its recipe, the YAML next to the training script (`--config`)."""
    prepare: str
    """The command that writes such data."""
    rows: str
    """What one row of it is, in the plural: "conversations", "preference pairs"."""

    @property
    def data(self) -> str:
        """The data in words: "chat JSONL", "preference JSONL"."""
        return f"{self.task} JSONL"


SFT = Trainer(
    name="sft",
    help="supervised fine-tuning on chat data (TRL's SFTTrainer)",
    task="chat",
    row_problems=chat_format.row_problems,
    hyperparameters=TRAIN_HYPERPARAMETERS,
    prepare="phi data prepare",
    rows="conversations",
)
DPO = Trainer(
    name="dpo",
    help="direct preference optimization on chosen/rejected pairs (TRL's DPOTrainer)",
    task="preference",
    row_problems=preference_format.row_problems,
    hyperparameters=TRAIN_SOURCE / "hyperparameters-dpo.yaml",
    prepare="phi data prepare --task preference",
    rows="preference pairs",
)
TRAINERS: dict[str, Trainer] = {trainer.name: trainer for trainer in (SFT, DPO)}
DEFAULT_TRAINER = SFT.name


def trainer(name: str) -> Trainer:
    if name not in TRAINERS:
        raise UsageError(f"--trainer {name!r}: must be one of {', '.join(TRAINERS)}")
    return TRAINERS[name]


def require_data(path: Path, flag: str, name: str = DEFAULT_TRAINER) -> chat_format.FileReport:
    """The file's report when every line is a row of the trainer's data; UsageError
    otherwise: in one line for a file that is not JSON Lines, is empty, or holds only the
    other trainer's rows (chat rows given to DPO, pairs given to SFT), else naming its first
    bad lines as FILE:LINE: reason."""
    chosen = trainer(name)
    problem = chat_format.file_problem(path, task=chosen.task)
    if problem is not None:
        raise UsageError(f"{flag} {path}: {problem}")
    kinds: set[str | None] = set()

    def problems(row: Any) -> list[str]:
        kinds.add(preference_format.task_of(row))
        return chosen.row_problems(row)

    report = chat_format.validate_rows(chat_format.read_jsonl(path), path, problems)
    if report.ok:
        return report
    if report.rows == 0:
        raise UsageError(f"{flag} {path}: the file holds no rows: no {chosen.rows} to train on")
    others = [t for t in TRAINERS.values() if t.task != chosen.task and kinds == {t.task}]
    if others:
        raise UsageError(
            f"{flag} {path} holds {others[0].task} data, not {chosen.task} data: "
            f"--trainer {chosen.name} trains on {chosen.data} ({chosen.prepare}); "
            f"train on this file with --trainer {others[0].name}"
        )
    shown = "\n".join(
        f"  {path}:{line}: {reason}" for line, reason in report.problems[:SHOWN_PROBLEMS]
    )
    more = len(report.problems) - SHOWN_PROBLEMS
    raise UsageError(
        f"{flag} {path} is not {chosen.data} ({len(report.problems)} problem(s)):\n{shown}"
        + (f"\n  ... and {more} more (`phi data validate {path}` lists them)" if more > 0 else "")
    )

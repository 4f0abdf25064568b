"""What a fine-tuning method is: one object per method module, registered in `methods.METHODS`.

A method declares its name and one-line help, the options it takes (argparse's own keywords;
`phi finetune submit` adds them and refuses each one to the methods that do not take it), how
it checks a request and plans its job, the workspace the job runs in, the models it offers
from the facts table, the trainers it runs (`trainers.TRAINERS`: SFT, DPO) and why not the
others, and what `phi doctor` checks for it. Shared code names no method.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_phi.cloud.finetune.data_assets import check_files
from finetune_phi.cloud.finetune.models import Offer
from finetune_phi.cloud.finetune.trainers import DEFAULT_TRAINER, SFT
from finetune_phi.core.contract import PROJECT
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_outputs import StackOutputs

EXPERIMENT = PROJECT


@dataclass(frozen=True)
class Option:
    """One command-line option of a method: its flag and the keywords of argparse's
    `add_argument` for it."""

    flag: str
    settings: Mapping[str, Any]

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def default(self) -> Any:
        """The value when the option is not given."""
        if "default" in self.settings:
            return self.settings["default"]
        return False if self.settings.get("action") == "store_true" else None


def option(flag: str, **settings: Any) -> Option:
    """`option("--epochs", type=int, help=...)`, as `add_argument` would take it."""
    return Option(flag, settings)


# Hyperparameters most services take, under one spelling for every method that takes them.
EPOCHS = option("--epochs", type=int, help="training epochs (num_train_epochs)")
BATCH_SIZE = option(
    "--batch-size", type=int, help="batch size per device (per_device_train_batch_size)"
)
LEARNING_RATE = option(
    "--learning-rate", type=float, help="learning rate (catalog default 2e-5; learning_rate)"
)

MODEL_VERSION = option(
    "--model-version",
    type=int,
    help="the registry model's version (default: the one its latest label names at submit)",
)


def check_model_version(request: Request) -> None:
    version = request.value(MODEL_VERSION)
    if version is not None and version < 1:
        raise UsageError(f"--model-version {version}: must be a version number, 1 or more")


def check_experiment(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,255}", name):
        raise UsageError(f"--experiment {name!r}: letters, digits, '_', '-', '.'")


@dataclass(frozen=True)
class Request:
    """What one method is asked: the options every method shares, and its own."""

    train_file: Path
    eval_file: Path
    model: str
    """`--model`, or the method's default; offered, where the method has an `offer`."""
    experiment: str = EXPERIMENT
    values: Mapping[str, Any] = field(default_factory=dict)
    """The method's own options by dest; a missing one has its default."""
    extra_args: tuple[str, ...] = ()
    """Further `--name value` pairs, for a method that passes them on."""
    phi_options: tuple[str, ...] = ()
    """The command's own options, to name the closest one to a misspelt argument."""
    verbose: bool = False
    """`phi --verbose`: a dry run prints all it could (the custom job's whole pip lock)."""
    trainer: str = DEFAULT_TRAINER
    """`--trainer`: one the method runs (`FinetuneMethod.trainers`)."""

    def value(self, option: Option) -> Any:
        return self.values.get(option.dest, option.default)

    def check(self) -> None:
        """The rules of the shared options: the files are the trainer's data."""
        check_files(self.train_file, self.eval_file, self.trainer)
        check_experiment(self.experiment)


@dataclass(frozen=True)
class PlannedJob:
    job: Any
    """azure-ai-ml's job entity, ready to send."""
    spec: str
    """Its YAML: what the dry run prints."""


@dataclass(frozen=True)
class Site:
    """What `phi doctor` knows of the stack a method would run on."""

    location: str
    foundry: bool
    """The stack has a (hub-based) Foundry project."""


@dataclass(frozen=True)
class Finding:
    """One row of `phi doctor`'s models check."""

    ok: bool | None
    """True passed, False failed, None not checked (the detail says why)."""
    detail: str
    fix: str = ""


def no_findings(site: Site) -> list[Finding]:
    return []


@dataclass(frozen=True)
class FinetuneMethod:
    name: str
    """`phi finetune submit --method NAME`."""
    help: str
    options: tuple[Option, ...]
    """Its own options; every other method refuses them."""
    check: Callable[[Request], None]
    """Every rule of its own options, each naming its option (UsageError); sends nothing."""
    plan: Callable[[Request, StackOutputs], PlannedJob]
    """The job and its dry-run YAML, from a checked request and the stack outputs; sends
    nothing."""
    workspace_output: str
    """The stack output naming the workspace the job runs in."""
    default_model: str
    offer: Offer | None = None
    """The models of the facts table it fine-tunes (any other `--model` is refused); None:
    any Hugging Face model."""
    preflight: Callable[[Site], list[Finding]] = no_findings
    """What `phi doctor` checks for it: its model offered, in the region, and so on."""
    extra_arguments: str = ""
    """What further `--name value` pairs are to it ("TRL arguments"); empty: it takes none."""
    trainers: tuple[str, ...] = (SFT.name,)
    """The `--trainer`s it runs (names in `trainers.TRAINERS`)."""
    trainer_refusal: str = "does not run it"
    """Why it runs no other trainer, with a dated source for what Azure offers; `phi finetune
    submit` says it when asked for one."""

"""`phi train --local`: the training script the Azure ML job runs, on this machine: SFT on
chat data, or DPO on preference pairs (`--trainer dpo`), from a hub id, a model folder or the
MLflow model an earlier run wrote."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune_phi.cli.options import Commands, add_trainer_option, command, option_strings
from finetune_phi.cloud.finetune.custom import GPUS_PER_NODE, check_trl_args, fsdp_arguments
from finetune_phi.cloud.finetune.trainers import TRAINERS, require_data
from finetune_phi.core.contract import PROJECT
from finetune_phi.core.errors import UsageError
from finetune_phi.core.folders import TRAIN_FSDP_CONFIG, TRAIN_SOURCE
from finetune_phi.core.renames import renamed
from finetune_phi.data import hub
from finetune_phi.evaluation.models import model_location
from finetune_phi.local.processes import run_in_group


class OldSpelling(argparse.Action):
    """An option's old spelling: sets the option (its `dest`) and says, once, what it is now."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        renamed(str(option_string), "--" + self.dest.replace("_", "-"))
        setattr(namespace, self.dest, values)


def register(commands: Commands) -> None:
    train = commands.add_parser(
        "train",
        help="run the training script locally (extra --args go to TRL)",
        description="Runs jobs/train/src/train.py, the script the Azure ML job runs. Any "
        "further --name value pairs are TRL/Trainer arguments in TRL's spelling, e.g. "
        "--num_train_epochs 1.",
    )
    train.add_argument("--local", action="store_true", required=True, help="run on this machine")
    train.add_argument(
        "--model",
        required=True,
        help="hub id or local folder of the model, or an MLflow model folder (DIR/model of an "
        "earlier phi train: DPO after SFT)",
    )
    add_trainer_option(train, lambda t: f", recipe {t.hyperparameters.name}")
    train.add_argument("--train-file", type=Path, required=True)
    train.add_argument("--eval-file", type=Path)
    train.add_argument(
        "--output-dir",
        type=Path,
        required=True,
        help="MLflow model in DIR/model, metrics in DIR/mlruns (MLflow tracking, unless "
        "$MLFLOW_TRACKING_URI names another)",
    )
    train.add_argument(GPUS_PER_NODE.flag, **GPUS_PER_NODE.settings)
    train.add_argument(
        "--nproc-per-node",
        type=int,
        dest=GPUS_PER_NODE.dest,
        action=OldSpelling,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )
    train.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the model over the processes (FSDP2, the job's fsdp.json); needs 2 or more",
    )
    command(train, run, passthrough=True)


def run(args: argparse.Namespace) -> int:
    trainer = TRAINERS[args.trainer]
    check_trl_args(
        args.trl_args, option_strings(args.command_parser), fsdp=args.fsdp, trainer=trainer.name
    )
    if args.fsdp and args.gpus_per_node < 2:
        raise UsageError("--fsdp shards the model over processes: give --gpus-per-node 2 or more")
    model = model_location(args.model, "--model")
    hub.require(model, "--model", "a local model folder: --model DIR")
    for flag, path in (("--train-file", args.train_file), ("--eval-file", args.eval_file)):
        if path is not None:
            require_data(path, flag, trainer.name)
    launcher = [sys.executable]
    if args.gpus_per_node > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={args.gpus_per_node}"]
    output = args.output_dir.resolve()
    command = [
        *launcher,
        str(TRAIN_SOURCE / "train.py"),
        "--trainer",
        trainer.name,
        "--config",
        str(trainer.hyperparameters),
        "--model_name_or_path",
        model,
        "--train_file",
        str(args.train_file.resolve()),
        *(["--eval_file", str(args.eval_file.resolve())] if args.eval_file else []),
        "--output_dir",
        str(output / "checkpoints"),
        "--model_output",
        str(output / "model"),
        *(fsdp_arguments(str(TRAIN_FSDP_CONFIG)) if args.fsdp else ()),
        *args.trl_args,
    ]
    return run_in_group(command, env=tracking_environment(output))


def tracking_environment(output: Path) -> dict[str, str]:
    """The training's environment: MLflow tracking in `output`/mlruns, where the script logs
    its curated parameters and metrics (as it logs to Azure ML's tracking in a job), unless
    $MLFLOW_TRACKING_URI already names a tracking server. Says where, and how to see it."""
    env = dict(os.environ)
    if env.get("MLFLOW_TRACKING_URI"):
        print(f"phi: metrics go to MLflow at {env['MLFLOW_TRACKING_URI']}", file=sys.stderr)
        return env
    store = output / "mlruns"
    # mlflow-skinny has no database store (no alembic): the file store, which MLflow 3 keeps
    # behind this switch.
    env |= {"MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    env.setdefault("MLFLOW_EXPERIMENT_NAME", PROJECT)
    print(
        f"phi: metrics go to MLflow in {store}; the curves: pip install mlflow, then "
        f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {store}",
        file=sys.stderr,
    )
    return env

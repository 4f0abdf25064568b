"""`phi train --local`: the training script the Azure ML job runs, on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.cli.options import Commands, command, option_strings
from jobs.cloud.finetune.custom import check_trl_args, fsdp_arguments
from jobs.data import hub
from jobs.errors import UsageError
from jobs.local.processes import run_in_group
from jobs.uploads import TRAIN_FSDP_CONFIG, TRAIN_HYPERPARAMETERS, TRAIN_SOURCE


def register(commands: Commands) -> None:
    train = commands.add_parser(
        "train",
        help="run the training script locally (extra --args go to TRL)",
        description="Runs jobs/uploads/train/src/train.py, the script the Azure ML job runs. Any "
        "further --name value pairs are TRL/Trainer arguments in TRL's spelling, e.g. "
        "--num_train_epochs 1.",
    )
    train.add_argument("--local", action="store_true", required=True, help="run on this machine")
    train.add_argument("--model", required=True, help="hub id or local folder of the model")
    train.add_argument("--train-file", type=Path, required=True)
    train.add_argument("--eval-file", type=Path)
    train.add_argument("--output-dir", type=Path, required=True, help="MLflow model in DIR/model")
    train.add_argument(
        "--nproc-per-node", type=int, default=1, help="processes (torchrun) on this machine"
    )
    train.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the model over the processes (FSDP2, the job's fsdp.json); needs 2 or more",
    )
    command(train, run, passthrough=True)


def run(args: argparse.Namespace) -> int:
    check_trl_args(args.trl_args, option_strings(args.command_parser), fsdp=args.fsdp)
    if args.fsdp and args.nproc_per_node < 2:
        raise UsageError("--fsdp shards the model over processes: give --nproc-per-node 2 or more")
    hub.require(args.model, "--model", "a local model folder: --model DIR")
    launcher = [sys.executable]
    if args.nproc_per_node > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={args.nproc_per_node}"]
    output = args.output_dir.resolve()
    command = [
        *launcher,
        str(TRAIN_SOURCE / "train.py"),
        "--config", str(TRAIN_HYPERPARAMETERS),
        "--model_name_or_path", args.model,
        "--train_file", str(args.train_file.resolve()),
        *(["--eval_file", str(args.eval_file.resolve())] if args.eval_file else []),
        "--output_dir", str(output / "checkpoints"),
        "--model_output", str(output / "model"),
        *(fsdp_arguments(str(TRAIN_FSDP_CONFIG)) if args.fsdp else ()),
        *args.trl_args,
    ]  # fmt: skip
    return run_in_group(command)

"""`phi finetune submit`: the fine-tune as an Azure ML job, by one of three methods."""

from __future__ import annotations

import argparse
from pathlib import Path

from infra.azure_facts import DEFAULT_CATALOG_MODEL
from jobs import state
from jobs.cli.options import (
    Commands,
    add_outputs_options,
    command,
    option_strings,
    read_outputs,
)
from jobs.cloud.finetune import custom, methods
from jobs.data import prepare


def register(commands: Commands) -> None:
    submit = (
        commands.add_parser("finetune", help="fine-tune in Azure ML")
        .add_subparsers(dest="finetune_command", required=True, metavar="COMMAND")
        .add_parser(
            "submit",
            help="submit the fine-tune job (extra --args go to TRL)",
            description="Builds and submits the Azure ML job. With --method custom, further "
            "--name value pairs are TRL/Trainer arguments, e.g. --num_train_epochs 1.",
        )
    )
    add_outputs_options(submit)
    submit.add_argument("--train-file", type=Path, default=Path("data") / prepare.TRAIN_FILE)
    submit.add_argument("--test-file", type=Path, default=Path("data") / prepare.TEST_FILE)
    submit.add_argument("--profile", choices=sorted(custom.PROFILES), default="gpu")
    submit.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    submit.add_argument(
        "--gpus-per-node", type=int, default=1, help="processes per node (default: 1)"
    )
    submit.add_argument(
        "--fsdp",
        action="store_true",
        help="custom: shard the model over all nodes x GPUs (FSDP2; for Phi-4-class models)",
    )
    submit.add_argument(
        "--model",
        help=f"default: {custom.DEFAULT_MODEL} (custom), {DEFAULT_CATALOG_MODEL} (catalog, serverless)",
    )
    submit.add_argument("--experiment", default=custom.EXPERIMENT, help="default: %(default)s")
    submit.add_argument(
        "--method", choices=methods.METHODS, default="custom",
        help="custom: our training script (default); catalog: the model catalog's fine-tuning "
        "pipeline on the GPU cluster; serverless: fine-tuning as a service in the Foundry project",
    )  # fmt: skip
    tuning = submit.add_argument_group("catalog and serverless hyperparameters")
    tuning.add_argument("--epochs", type=int, help="training epochs (num_train_epochs)")
    tuning.add_argument(
        "--batch-size", type=int, help="batch size per device (per_device_train_batch_size)"
    )
    tuning.add_argument(
        "--learning-rate", type=float, help="learning rate (catalog default 2e-5; learning_rate)"
    )
    tuning.add_argument("--lr-scheduler", help="catalog: scheduler (default linear)")
    tuning.add_argument(
        "--lora", action=argparse.BooleanOptionalAction, help="catalog: LoRA (default on)"
    )
    tuning.add_argument(
        "--deepspeed",
        action=argparse.BooleanOptionalAction,
        help="catalog: DeepSpeed (default off)",
    )
    tuning.add_argument(
        "--output-model-name", default="phi-finetuned", help="serverless: name of the output model"
    )
    tuning.add_argument(
        "--auto-split",
        action="store_true",
        help="serverless: let the service split validation data off",
    )
    submit.add_argument("--dry-run", action="store_true", help="print the job YAML; send nothing")
    submit.add_argument("--no-stream", action="store_true", help="do not wait for the job's logs")
    command(submit, run_submit, passthrough=True)


def run_submit(args: argparse.Namespace) -> int:
    options = methods.SubmitOptions.from_namespace(args, option_strings(args.command_parser))
    options.check()
    outputs = read_outputs(args)
    planned = methods.plan(options, outputs)
    if args.dry_run:
        print(planned.spec, end="")
        return 0
    workspace = outputs.workspace(planned.workspace_output)
    ml_client = workspace.client()
    created = methods.submit(ml_client, options, planned.job)
    state.record(workspace.state_key, state.LAST_FINETUNE_JOB, created.name)
    print(f"submitted {created.name}\n{created.studio_url}")
    if not args.no_stream:
        ml_client.jobs.stream(created.name)
    return 0

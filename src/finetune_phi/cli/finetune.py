"""`phi finetune submit`: the fine-tune as an Azure ML job, by any registered method
(`finetune_phi.cloud.finetune.methods`); each method's options come from its own module."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_phi.cli.options import (
    Commands,
    add_outputs_options,
    command,
    option_strings,
    read_outputs,
)
from finetune_phi.cloud.finetune import methods
from finetune_phi.cloud.finetune.method import EXPERIMENT
from finetune_phi.core import state
from finetune_phi.core.renames import renamed
from finetune_phi.data import prepare


def register(commands: Commands) -> None:
    registered = list(methods.METHODS.values())
    passing = [m for m in registered if m.extra_arguments]
    submit = (
        commands.add_parser("finetune", help="fine-tune in Azure ML")
        .add_subparsers(dest="finetune_command", required=True, metavar="COMMAND")
        .add_parser(
            "submit",
            help=f"submit the fine-tune job ({', '.join(methods.METHODS)})",
            description="Builds and submits the Azure ML job."
            + "".join(
                f" With --method {m.name}, further --name value pairs are {m.extra_arguments}."
                for m in passing
            ),
        )
    )
    add_outputs_options(submit)
    submit.add_argument("--train-file", type=Path, default=Path("data") / prepare.TRAIN_FILE)
    submit.add_argument("--eval-file", type=Path, default=Path("data") / prepare.EVAL_FILE)
    submit.add_argument("--test-file", type=Path, dest="old_eval_file", help=argparse.SUPPRESS)
    defaults: dict[str, list[str]] = {}
    for method in registered:
        defaults.setdefault(method.default_model, []).append(method.name)
    submit.add_argument(
        "--model",
        help="default: "
        + ", ".join(f"{model} ({', '.join(names)})" for model, names in defaults.items()),
    )
    submit.add_argument("--experiment", default=EXPERIMENT, help="default: %(default)s")
    submit.add_argument(
        "--method",
        choices=list(methods.METHODS),
        default=methods.DEFAULT_METHOD,
        help="; ".join(
            m.name + (" (default)" if m.name == methods.DEFAULT_METHOD else "") + f": {m.help}"
            for m in registered
        ),
    )
    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    for option in methods.options():
        takers = tuple(m.name for m in methods.takers(option))
        if takers not in groups:
            groups[takers] = submit.add_argument_group(f"--method {', '.join(takers)}")
        groups[takers].add_argument(option.flag, **option.settings)
    submit.add_argument("--dry-run", action="store_true", help="print the job YAML; send nothing")
    submit.add_argument("--no-stream", action="store_true", help="do not wait for the job's logs")
    command(submit, run_submit, passthrough=bool(passing))


def run_submit(args: argparse.Namespace) -> int:
    if args.old_eval_file:
        renamed("--test-file", "--eval-file")
        args.eval_file = args.old_eval_file
    args.eval_file = prepare.eval_file(args.eval_file)
    options = methods.SubmitOptions.from_namespace(args, option_strings(args.command_parser))
    options.check()
    method = options.finetune_method
    outputs = read_outputs(args)
    planned = method.plan(options.request(), outputs)
    if args.dry_run:
        print(planned.spec, end="")
        return 0
    workspace = outputs.workspace(method.workspace_output)
    ml_client = workspace.client()
    created = methods.submit(ml_client, options, planned.job)
    state.record(workspace.state_key, state.LAST_FINETUNE_JOB, created.name)
    print(f"submitted {created.name}\n{created.studio_url}")
    if not args.no_stream:
        ml_client.jobs.stream(created.name)
    return 0

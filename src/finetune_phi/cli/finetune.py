"""`phi finetune submit`: the fine-tune as an Azure ML job, by any registered method
(`finetune_phi.cloud.finetune.methods`); each method's options come from its own module.
`phi finetune list|status|logs|cancel|download`: that job afterwards
(`finetune_phi.cloud.finetune.jobs`), by default the one `submit` recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune_phi.cli.options import (
    Commands,
    add_outputs_options,
    add_trainer_option,
    command,
    option_strings,
    read_outputs,
)
from finetune_phi.cloud.finetune import MODEL_OUTPUT, jobs, methods
from finetune_phi.cloud.finetune.method import EXPERIMENT
from finetune_phi.cloud.finetune.models import REGISTRY
from finetune_phi.cloud.finetune.trainers import TRAINERS
from finetune_phi.cloud.ml_client import registry_models
from finetune_phi.core import state
from finetune_phi.core.renames import renamed
from finetune_phi.core.stack_outputs import Workspace
from finetune_phi.data import prepare


def register(commands: Commands) -> None:
    registered = list(methods.METHODS.values())
    passing = [m for m in registered if m.extra_arguments]
    group = commands.add_parser("finetune", help="fine-tune in Azure ML").add_subparsers(
        dest="finetune_command", required=True, metavar="COMMAND"
    )
    submit = group.add_parser(
        "submit",
        help=f"submit the fine-tune job ({', '.join(methods.METHODS)})",
        description="Builds and submits the Azure ML job."
        + "".join(
            f" With --method {m.name}, further --name value pairs are {m.extra_arguments}."
            for m in passing
        ),
    )
    add_outputs_options(submit)
    for flag, index in (("--train-file", 0), ("--eval-file", 1)):
        submit.add_argument(
            flag,
            type=Path,
            help="default: "
            + ", ".join(
                f"{prepare.DATA_DIR / prepare.prepared_files(t.task)[index]} (--trainer {t.name})"
                for t in TRAINERS.values()
            )
            + ", as `phi data prepare` writes them",
        )
    submit.add_argument("--test-file", type=Path, dest="old_eval_file", help=argparse.SUPPRESS)
    defaults: dict[str, list[str]] = {}
    for method in registered:
        defaults.setdefault(method.default_model, []).append(method.name)
    submit.add_argument(
        "--model",
        help="default: "
        + ", ".join(f"{model} ({', '.join(names)})" for model, names in defaults.items()),
    )
    add_trainer_option(
        submit, lambda t: f" (--method {', '.join(m.name for m in methods.runners(t.name))})"
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
    register_job_commands(group)


def run_submit(args: argparse.Namespace) -> int:
    if args.old_eval_file:
        renamed("--test-file", "--eval-file")
        args.eval_file = args.old_eval_file
    train_name, eval_name = prepare.prepared_files(TRAINERS[args.trainer].task)
    args.train_file = args.train_file or prepare.DATA_DIR / train_name
    args.eval_file = prepare.eval_file(args.eval_file or prepare.DATA_DIR / eval_name)
    options = methods.SubmitOptions.from_namespace(args, option_strings(args.command_parser))
    options.check()
    method = options.finetune_method
    outputs = read_outputs(args)
    if args.dry_run:
        print(method.plan(options.request(), outputs).spec, end="")
        return 0
    workspace = outputs.workspace(method.workspace_output)
    ml_client = workspace.client()
    # A registry model goes as versions/N: the latest label is read once, now.
    options = methods.pin_model_version(options, lambda: registry_models(REGISTRY))
    planned = method.plan(options.request(), outputs)
    created = methods.submit(ml_client, options, planned.job)
    state.record(workspace.state_key, state.LAST_FINETUNE_JOB, created.name)
    print(f"submitted {created.name}\n{created.studio_url}")
    if not args.no_stream:
        ml_client.jobs.stream(created.name)
    return 0


RECORDED = "default: the last job `phi finetune submit` recorded for the workspace"


def job_parser(
    group: Commands, name: str, summary: str, *, job: str | None = RECORDED
) -> argparse.ArgumentParser:
    """A job command's parser: the workspace (as `submit` takes it), JOB, --dry-run."""
    parser = group.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.")
    add_outputs_options(parser)
    parser.add_argument(
        "--method",
        choices=list(methods.METHODS),
        default=methods.DEFAULT_METHOD,
        help="the --method the job was submitted with: it picks the workspace, the stack's or "
        "its Foundry project's (default: %(default)s)",
    )
    if job is not None:
        parser.add_argument("job", nargs="?" if job == RECORDED else None, metavar="JOB", help=job)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the azure-ai-ml call and the request it would send, and to which "
        "workspace; send nothing (no credentials needed)",
    )
    return parser


def register_job_commands(group: Commands) -> None:
    listing = job_parser(group, "list", "list the experiment's recent jobs", job=None)
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--experiment", default=EXPERIMENT, help="default: %(default)s")
    which.add_argument(
        "--all-experiments",
        dest="experiment",
        action="store_const",
        const=None,
        help="every experiment's jobs (a serverless job has the service's own experiment)",
    )
    listing.add_argument("--max", type=int, default=20, help="at most N jobs (default: 20)")
    command(listing, run_list)
    status = job_parser(group, "status", "a job's status, studio URL and, once finished, output")
    command(status, run_status)
    logs = job_parser(group, "logs", "a job's logs so far, or with --follow until it ends")
    logs.add_argument(
        "--follow", action="store_true", help="stream the logs until the job ends (jobs.stream)"
    )
    command(logs, run_logs)
    cancel = job_parser(group, "cancel", "cancel a running job", job="the job to cancel")
    command(cancel, run_cancel)
    download = job_parser(
        group,
        "download",
        "download a finished job's MLflow model for phi eval --candidate and phi serve --model",
    )
    download.add_argument(
        "--output",
        type=Path,
        default=Path("out") / "model",
        metavar="DIR",
        help="where the model goes, written whole or not at all (default: %(default)s)",
    )
    download.add_argument("--force", action="store_true", help="replace a non-empty --output")
    command(download, run_download)


def job_workspace(args: argparse.Namespace) -> tuple[Workspace, str | None]:
    """The workspace (the --method's, from the stack outputs) and the job in it."""
    workspace = read_outputs(args).workspace(methods.METHODS[args.method].workspace_output)
    return workspace, jobs.job_name(workspace, args.job) if "job" in args else None


def run_list(args: argparse.Namespace) -> int:
    workspace, _ = job_workspace(args)
    jobs.check_limit(args.max)
    wanted = f"of experiment {args.experiment} " if args.experiment else ""
    if args.dry_run:
        then = (f"the next pages (nextLink) until {args.max} jobs {wanted}are found",)
        print(jobs.plan(workspace, None, jobs.call("list"), then=then).text(), end="")
        return 0
    found = jobs.list_jobs(workspace.client(), args.experiment, args.max)
    if not found:
        print(f"no jobs {wanted}in workspace {workspace.name}")
        return 0
    print("\n".join(jobs.list_lines(found)))
    return 0


def run_status(args: argparse.Namespace) -> int:
    workspace, name = job_workspace(args)
    assert name is not None
    if args.dry_run:
        print(jobs.plan(workspace, name, jobs.call("get", name)).text(), end="")
        return 0
    print("\n".join(jobs.status_lines(workspace.client().jobs.get(name))))
    return 0


def run_logs(args: argparse.Namespace) -> int:
    workspace, name = job_workspace(args)
    assert name is not None
    if args.dry_run:
        if args.follow:
            then = (
                "the run's status and log files from the workspace's run history, until it ends",
            )
            print(jobs.plan(workspace, name, jobs.call("stream", name), then=then).text(), end="")
        else:
            then = ("the run's list of log files (run history), then each file's text (storage)",)
            print(jobs.plan(workspace, name, jobs.call("get", name), then=then).text(), end="")
        return 0
    client = workspace.client()
    if args.follow:
        try:
            jobs.follow(client, name)
        except KeyboardInterrupt:
            print(
                f"phi: stopped following job {name}; the job goes on "
                f"(phi finetune cancel {name} stops it)",
                file=sys.stderr,
            )
            raise
        return 0
    if not jobs.print_logs(client, name, sys.stdout):
        print(f"job {name} has no logs yet (phi finetune logs {name} --follow waits for them)")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    workspace, name = job_workspace(args)
    assert name is not None
    if args.dry_run:
        then = ("the operation's status, until Azure has accepted the cancel",)
        steps = (jobs.call("get", name), jobs.call("begin_cancel", name))
        print(jobs.plan(workspace, name, *steps, then=then).text(), end="")
        return 0
    print(jobs.cancel(workspace.client(), name))
    return 0


def run_download(args: argparse.Namespace) -> int:
    workspace, name = job_workspace(args)
    assert name is not None
    jobs.check_output(args.output, args.force)
    if args.dry_run:
        staging = args.output.parent / f".{args.output.name}.XXXXXXXX"
        then = (
            f"the files of its output {MODEL_OUTPUT!r} from the workspace's storage into "
            f"{staging}, renamed to {args.output} once they hold an MLmodel file",
        )
        steps = (
            jobs.call("get", name),
            jobs.call("download", name=name, output_name=MODEL_OUTPUT, download_path=str(staging)),
        )
        print(jobs.plan(workspace, name, *steps, then=then).text(), end="")
        return 0
    output = jobs.download(
        workspace.client(),
        name,
        args.output,
        force=args.force,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(
        f"job {name}'s MLflow model is at {output}: phi eval --base MODEL --candidate {output}; "
        f"phi serve --model {output}"
    )
    return 0

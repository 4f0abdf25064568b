"""`phi`: the command line of the jobs side. Every subcommand has --help.

phi data prepare --out data                  # 1 % of ultrachat_200k, split 80/20
phi data validate data/train_data.jsonl      # every bad line, by number and reason
phi train --local --model DIR --train-file F --eval-file F --output-dir out
phi finetune submit --stack dev --dry-run    # the job YAML, sent nowhere
phi deploy --stack dev --dry-run             # model, deployment and traffic plan
phi serve --model out/model                  # the scoring server, locally
phi chat --local http://127.0.0.1:5001 "Who founded Microsoft?"
phi flow connect --stack dev                 # the flow's connection, key fetched now
phi rehearse                                 # all of it, offline, on a tiny model
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from flow.endpoint_client import APIS, EndpointError
from jobs import (
    catalog,
    chat,
    deploy,
    finetune,
    flow_connect,
    serve,
    serverless,
    stack_outputs,
    state,
)
from jobs.data import chat_format, prepare


def _outputs_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group(
        "where the stack outputs come from (default: $FINETUNE_PHI_* variables)"
    )
    choice = source.add_mutually_exclusive_group()
    choice.add_argument("--stack", help="Pulumi stack name; runs `pulumi stack output --json`")
    choice.add_argument("--outputs", type=Path, help="JSON file from `pulumi stack output --json`")


def _api_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        choices=APIS,
        default="score",
        help="the endpoint's contract: score (managed endpoint, the default) or "
        "chat-completions (serverless endpoint, after `phi deploy --serverless`)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="prepare and validate chat data").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    prep = data.add_parser(
        "prepare", help="sample, validate and split chat data into train/test JSONL"
    )
    prep.add_argument(
        "--out", type=Path, default=Path("data"), help="output folder (default: data)"
    )
    prep.add_argument(
        "--sample",
        default="1%",
        help="how much to keep: a percentage (1%%, the default) or a row count (10)",
    )
    prep.add_argument("--seed", type=int, default=42, help="seed of the 80/20 split (default: 42)")
    prep.add_argument(
        "--from",
        dest="from_path",
        type=Path,
        help="a local .jsonl or .parquet file instead of the hub",
    )
    prep.add_argument(
        "--dataset", default=prepare.DEFAULT_DATASET, help="hub dataset (default: %(default)s)"
    )
    prep.add_argument(
        "--split", default=prepare.DEFAULT_SPLIT, help="its split (default: %(default)s)"
    )
    prep.set_defaults(handler=run_data_prepare)

    validate = data.add_parser("validate", help="check chat JSONL files; every bad line by number")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument(
        "--tokenizer", help="tokenizer (hub id or folder) for token-length statistics"
    )
    validate.add_argument(
        "--max-length", type=int, default=2048, help="length to count overlong rows against"
    )
    validate.set_defaults(handler=run_data_validate)

    train = commands.add_parser(
        "train",
        help="run the training script locally (extra --args go to TRL)",
        description="Runs jobs/train/src/train.py, the script the Azure ML job runs. Any further "
        "--name value pairs are TRL/Trainer arguments in TRL's spelling, e.g. --num_train_epochs 1.",
    )
    train.add_argument("--local", action="store_true", required=True, help="run on this machine")
    train.add_argument("--model", required=True, help="hub id or local folder of the model")
    train.add_argument("--train-file", type=Path, required=True)
    train.add_argument("--eval-file", type=Path)
    train.add_argument("--output-dir", type=Path, required=True, help="MLflow model in DIR/model")
    train.add_argument(
        "--nproc-per-node", type=int, default=1, help="processes (torchrun) on this machine"
    )
    train.set_defaults(handler=run_train)

    submit = (
        commands.add_parser("finetune", help="fine-tune in Azure ML")
        .add_subparsers(dest="finetune_command", required=True, metavar="COMMAND")
        .add_parser(
            "submit",
            help="submit the fine-tune job (extra --args go to TRL)",
            description="Builds and submits the Azure ML command job. Further --name value pairs are "
            "TRL/Trainer arguments, e.g. --num_train_epochs 1.",
        )
    )
    _outputs_options(submit)
    submit.add_argument("--train-file", type=Path, default=Path("data") / prepare.TRAIN_FILE)
    submit.add_argument("--test-file", type=Path, default=Path("data") / prepare.TEST_FILE)
    submit.add_argument("--profile", choices=sorted(finetune.PROFILES), default="gpu")
    submit.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    submit.add_argument(
        "--gpus-per-node", type=int, default=1, help="processes per node (default: 1)"
    )
    submit.add_argument("--model", default=finetune.DEFAULT_MODEL, help="default: %(default)s")
    submit.add_argument("--experiment", default=finetune.EXPERIMENT, help="default: %(default)s")
    submit.add_argument(
        "--method", choices=("custom", "catalog", "serverless"), default="custom",
        help="custom: our training script (default); catalog: the model catalog's fine-tuning "
        "pipeline on the GPU cluster; serverless: fine-tuning as a service in the Foundry project",
    )  # fmt: skip
    tuning = submit.add_argument_group("catalog and serverless hyperparameters")
    tuning.add_argument("--epochs", type=int, help="training epochs")
    tuning.add_argument(
        "--batch-size", type=int, help="batch size per device (catalog) or per step (serverless)"
    )
    tuning.add_argument("--learning-rate", type=float, help="catalog: learning rate (default 2e-5)")
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
        "--learning-rate-multiplier", type=float, help="serverless: learning-rate multiplier"
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
    submit.set_defaults(handler=run_finetune_submit)

    deploy_parser = commands.add_parser(
        "deploy", help="register the fine-tuned model and deploy it blue/green to the endpoint"
    )
    _outputs_options(deploy_parser)
    deploy_parser.add_argument(
        "--job", help="fine-tune job (default: the last one `phi finetune submit` ran)"
    )
    deploy_parser.add_argument(
        "--profile", choices=sorted(deploy.INSTANCE_TYPES), default="gpu",
        help="gpu: Standard_NC6s_v3, cpu: Standard_E4s_v3 (the tutorials' two paths)",
    )  # fmt: skip
    deploy_parser.add_argument("--instance-type", help="any VM size; overrides --profile")
    deploy_parser.add_argument("--instance-count", type=int, default=1)
    deploy_parser.add_argument("--request-timeout-ms", type=int, default=90_000)
    deploy_parser.add_argument("--model-name", default=deploy.MODEL_NAME)
    deploy_parser.add_argument(
        "--dry-run", action="store_true", help="print model, deployment and plan; send nothing"
    )
    serverless_group = deploy_parser.add_argument_group("serverless (after --method serverless)")
    serverless_group.add_argument(
        "--serverless", action="store_true", help="a serverless endpoint in the Foundry project"
    )
    serverless_group.add_argument("--endpoint-name", help="default: phi-ft-<environment>")
    serverless_group.add_argument(
        "--delete",
        action="store_true",
        help="delete the serverless endpoint, then archive its model",
    )
    deploy_parser.set_defaults(handler=run_deploy)

    connect = (
        commands.add_parser("flow", help="the Prompt flow chat flow")
        .add_subparsers(dest="flow_command", required=True, metavar="COMMAND")
        .add_parser(
            "connect",
            help=f"create or update the local Prompt flow connection {flow_connect.CONNECTION_NAME}",
            description="Makes the flow's custom connection from the stack outputs (the key is fetched "
            f"at run time) or from --endpoint URL with the key in ${flow_connect.KEY_VARIABLE}.",
        )
    )
    _outputs_options(connect)
    connect.add_argument(
        "--endpoint", metavar="URL", help="a scoring URI, e.g. http://127.0.0.1:5001/score"
    )
    connect.add_argument(
        "--name", default=flow_connect.CONNECTION_NAME, help="default: %(default)s"
    )
    _api_option(connect)
    connect.set_defaults(handler=run_flow_connect)

    rehearse_parser = commands.add_parser(
        "rehearse",
        help="run the whole pipeline offline on a tiny model (the README's first command)",
    )
    rehearse_parser.add_argument("--work-dir", type=Path, help="default: .phi/rehearsal-<time>")
    rehearse_parser.add_argument(
        "--port", type=int, help="scoring server port (default: a free one)"
    )
    rehearse_parser.set_defaults(handler=run_rehearse)

    serve_parser = commands.add_parser(
        "serve", help="serve an MLflow model folder with the scoring server Azure ML uses"
    )
    serve_parser.add_argument(
        "--model", type=Path, required=True, help="MLflow model folder (has MLmodel)"
    )
    serve_parser.add_argument("--port", type=int, default=5001, help="default: 5001")
    serve_parser.set_defaults(handler=run_serve)

    chat_parser = commands.add_parser(
        "chat", help="ask the endpoint (or a local server) one question"
    )
    chat_parser.add_argument("question")
    _outputs_options(chat_parser)
    chat_parser.add_argument(
        "--local", metavar="URL", help="a `phi serve` server, e.g. http://127.0.0.1:5001"
    )
    chat_parser.add_argument("--system", help="a system message before the question")
    chat_parser.add_argument("--temperature", type=float)
    chat_parser.add_argument("--top-p", type=float)
    chat_parser.add_argument("--max-new-tokens", type=int)
    chat_parser.add_argument(
        "--greedy", action="store_true", help="do_sample false: the most likely answer"
    )
    _api_option(chat_parser)
    chat_parser.set_defaults(handler=run_chat)
    return parser


def run_data_prepare(args: argparse.Namespace, extra: Sequence[str]) -> int:
    size = prepare.SampleSize.parse(args.sample)
    result = prepare.prepare(
        out_dir=args.out,
        size=size,
        seed=args.seed,
        dataset=args.dataset,
        split=args.split,
        from_path=args.from_path,
    )
    print(
        f"wrote {result.train} ({result.train_rows} rows) and {result.test} ({result.test_rows} rows)"
    )
    return 0


def run_data_validate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    failed = False
    for path in args.files:
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            failed = True
            continue
        report = chat_format.validate_file(path)
        for line, reason in report.problems:
            print(f"{path}:{line}: {reason}", file=sys.stderr)
        print(f"{path}: {report.rows} rows, {len(report.problems)} problem(s)")
        failed |= not report.ok
        if report.ok and args.tokenizer:
            print(token_statistics(path, args.tokenizer, args.max_length))
    return 1 if failed else 0


def token_statistics(path: Path, tokenizer_name: str, max_length: int) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    lengths = sorted(
        len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        for messages in prepare.iter_messages(path)
    )
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    over = sum(length > max_length for length in lengths)
    return (
        f"{path}: tokens per conversation: min {lengths[0]}, median {statistics.median(lengths):g}, "
        f"mean {statistics.mean(lengths):.1f}, p95 {p95}, max {lengths[-1]}; "
        f"{over} over {max_length}"
    )


def run_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    finetune.check_trl_args(tuple(extra))
    launcher = [sys.executable]
    if args.nproc_per_node > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={args.nproc_per_node}"]
    output = args.output_dir.resolve()
    command = [
        *launcher,
        str(finetune.TRAIN_SOURCE / "train.py"),
        "--config", str(finetune.TRAIN_SOURCE / "hyperparameters.yaml"),
        "--model_name_or_path", args.model,
        "--train_file", str(args.train_file.resolve()),
        *(["--eval_file", str(args.eval_file.resolve())] if args.eval_file else []),
        "--output_dir", str(output / "checkpoints"),
        "--model_output", str(output / "model"),
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, check=False).returncode


CATALOG_ONLY = ("learning_rate", "lr_scheduler", "lora", "deepspeed")
SERVERLESS_ONLY = ("learning_rate_multiplier", "auto_split")


def _method_options(args: argparse.Namespace, extra: Sequence[str]) -> None:
    """Refuse options that the chosen method would silently ignore."""
    wrong = {
        "custom": (*CATALOG_ONLY, *SERVERLESS_ONLY, "epochs", "batch_size"),
        "catalog": SERVERLESS_ONLY,
        "serverless": CATALOG_ONLY,
    }[args.method]
    given = [name for name in wrong if getattr(args, name) not in (None, False)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise finetune.SubmitError(f"{flags}: not an option of --method {args.method}")
    if args.method != "custom" and (
        extra or args.profile != "gpu" or (args.nodes, args.gpus_per_node) != (1, 1)
    ):
        raise finetune.SubmitError(
            f"--method {args.method} runs the service's own recipe: TRL arguments, --profile, --nodes and "
            "--gpus-per-node belong to --method custom"
        )


def _method_job(
    args: argparse.Namespace, request: finetune.FinetuneRequest, outputs: stack_outputs.StackOutputs
) -> tuple[Any, str, str]:
    """(job, its YAML, the output naming the workspace it runs in) for the chosen method."""
    from jobs.azure_yaml import to_yaml

    if args.method == "custom":
        compute_key = finetune.PROFILES[args.profile].compute_output
        job = finetune.build_job(request, outputs.require(compute_key)[compute_key])
        return job, to_yaml(job), "workspaceName"
    model = catalog.catalog_model(args.model)
    assets = {
        name: f"azureml:{a.name}:{a.version}" for name, a in finetune.data_assets(request).items()
    }
    if args.method == "catalog":
        hyperparameters = catalog.CatalogHyperparameters(
            **{
                key: value
                for key, value in {
                    "learning_rate": args.learning_rate,
                    "lr_scheduler_type": args.lr_scheduler,
                    "num_train_epochs": args.epochs,
                    "per_device_train_batch_size": args.batch_size,
                    "apply_lora": args.lora,
                    "apply_deepspeed": args.deepspeed,
                }.items()
                if value is not None
            }
        )
        hyperparameters.check()
        spec = catalog.catalog_pipeline(
            model, outputs.require("gpuComputeName")["gpuComputeName"], assets["train_data"],
            assets["test_data"], hyperparameters, request.experiment,
        )  # fmt: skip
        return catalog.load_pipeline(spec), yaml.safe_dump(spec, sort_keys=False), "workspaceName"
    outputs.require("foundryProjectName")
    serverless = catalog.ServerlessHyperparameters(
        args.batch_size, args.learning_rate_multiplier, args.epochs
    )
    serverless.check()
    job = catalog.serverless_job(
        model, outputs.require("location")["location"], assets["train_data"],
        None if args.auto_split else assets["test_data"], serverless, args.output_model_name,
    )  # fmt: skip
    return job, to_yaml(job), "foundryProjectName"


def run_finetune_submit(args: argparse.Namespace, extra: Sequence[str]) -> int:
    request = finetune.FinetuneRequest(
        train_file=args.train_file,
        test_file=args.test_file,
        profile=args.profile,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        model=args.model,
        experiment=args.experiment,
        trl_args=tuple(extra),
    )
    _method_options(args, extra)
    request.check()
    outputs = stack_outputs.read(args.stack, args.outputs)
    job, spec, workspace_output = _method_job(args, request, outputs)
    if args.dry_run:
        print(spec, end="")
        return 0

    workspace = outputs.workspace(workspace_output)
    ml_client = workspace.client()
    created = finetune.submit(ml_client, request, job)
    state.record(workspace.state_key, finetune.LAST_JOB_KEY, created.name)
    print(f"submitted {created.name}\n{created.studio_url}")
    if not args.no_stream:
        ml_client.jobs.stream(created.name)
    return 0


def run_serverless_deploy(args: argparse.Namespace, outputs: stack_outputs.StackOutputs) -> int:
    environment = outputs.values.get("environment") or "dev"
    request = serverless.ServerlessRequest(
        args.endpoint_name or f"phi-ft-{environment}", args.model_name
    )
    request.check()
    if args.dry_run:
        print(serverless.plan_yaml(request), end="")
        return 0
    project = outputs.workspace("foundryProjectName")
    ml_client = project.client()
    if args.delete:
        serverless.delete(ml_client, request)
        state.record(project.state_key, serverless.ENDPOINT_STATE_KEY, None)
        return 0
    url = serverless.deploy(ml_client, request)
    state.record(project.state_key, serverless.ENDPOINT_STATE_KEY, request.endpoint_name)
    print(f"serverless endpoint {request.endpoint_name}: {url}")
    return 0


def run_deploy(args: argparse.Namespace, extra: Sequence[str]) -> int:
    outputs = stack_outputs.read(args.stack, args.outputs)
    if args.serverless:
        return run_serverless_deploy(args, outputs)
    if args.delete or args.endpoint_name:
        raise deploy.DeployError("--delete and --endpoint-name go with --serverless")
    job = args.job
    if job is None:
        job = state.recall(outputs.workspace().state_key, finetune.LAST_JOB_KEY)
        if job is None:
            raise deploy.DeployError(
                f"no fine-tune job recorded in {state.state_file()} for this workspace: pass --job NAME"
            )
    request = deploy.DeployRequest(
        job=job,
        instance_type=args.instance_type or deploy.INSTANCE_TYPES[args.profile],
        instance_count=args.instance_count,
        request_timeout_ms=args.request_timeout_ms,
        model_name=args.model_name,
    )
    request.check()
    found = outputs.require("endpointName", "identityClientId")
    if args.dry_run:
        print(
            deploy.plan_yaml(
                request,
                endpoint_name=found["endpointName"],
                identity_client_id=found["identityClientId"],
            ),
            end="",
        )
        return 0
    deploy.rollout(
        outputs.workspace().client(),
        request,
        endpoint_name=found["endpointName"],
        identity_client_id=found["identityClientId"],
    )
    return 0


def run_flow_connect(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.endpoint and (args.stack or args.outputs):
        raise flow_connect.ConnectError(
            "--endpoint names the endpoint itself: drop --stack/--outputs"
        )
    if args.endpoint:
        endpoint, key = args.endpoint, flow_connect.key_from_environment()
    else:
        outputs = stack_outputs.read(args.stack, args.outputs)
        if args.api == "chat-completions":
            target = chat.serverless_client(outputs)
            endpoint, key = target.scoring_uri, target.key or ""
        else:
            endpoint, key = outputs.require("scoringUri")["scoringUri"], chat.fetch_key(outputs)
    name = flow_connect.connect(endpoint, key, args.name, args.api)
    print(f"connection {name}: endpoint {endpoint} (key stored encrypted by Prompt flow)")
    return 0


def run_rehearse(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from jobs import rehearse

    return rehearse.run_cli(args.work_dir, args.port)


def run_serve(args: argparse.Namespace, extra: Sequence[str]) -> int:
    return serve.serve(args.model, args.port)


def run_chat(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.local and (args.stack or args.outputs):
        raise stack_outputs.OutputsError("--local talks to a local server: drop --stack/--outputs")
    if args.local:
        client = chat.local_client(args.local, args.api)
    else:
        outputs = stack_outputs.read(args.stack, args.outputs)
        client = (
            chat.serverless_client(outputs)
            if args.api == "chat-completions"
            else chat.stack_client(outputs)
        )
    parameters = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False if args.greedy else None,
    }
    print(chat.ask(client, args.question, args.system, parameters))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler not in (run_train, run_finetune_submit):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args, extra))
    except (
        prepare.DataError,
        finetune.SubmitError,
        stack_outputs.OutputsError,
        serve.ServeError,
        deploy.DeployError,
        flow_connect.ConnectError,
        catalog.CatalogError,
        serverless.ServerlessError,
        EndpointError,
    ) as error:
        print(f"phi: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

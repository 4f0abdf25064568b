"""`phi deploy`: the fine-tuned model, blue/green on the managed endpoint (on a serving
engine), or serverless."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from finetune_phi.cli.options import (
    Commands,
    add_engine_option,
    add_outputs_options,
    command,
    read_outputs,
)
from finetune_phi.cloud.deploy import managed, serverless
from finetune_phi.core import state
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.stack_outputs import StackOutputs
from finetune_phi.evaluation import safety
from finetune_phi.serving import DEFAULT_ENGINE, ENGINES

EVAL_REPORT = Path("eval/report.json")
"""Where `phi eval` writes its report by default (its --out, eval/)."""


def register(commands: Commands) -> None:
    deploy = commands.add_parser(
        "deploy", help="register the fine-tuned model and deploy it blue/green to the endpoint"
    )
    add_outputs_options(deploy)
    deploy.add_argument(
        "--job", help="fine-tune job (default: the last one `phi finetune submit` ran)"
    )
    deploy.add_argument(
        "--profile",
        choices=sorted(managed.INSTANCE_TYPES),
        default="gpu",
        help=", ".join(f"{name}: {size}" for name, size in managed.INSTANCE_TYPES.items())
        + " (the tutorials' two paths)",
    )
    deploy.add_argument(
        "--instance-type",
        help="a VM size of src/finetune_phi/core/azure_facts.py's table, not retired; "
        "overrides --profile",
    )
    deploy.add_argument("--instance-count", type=int, default=1)
    deploy.add_argument("--request-timeout-ms", type=int, default=90_000)
    deploy.add_argument("--model-name", default=managed.MODEL_NAME)
    add_engine_option(deploy)
    check = deploy.add_argument_group(
        "train/serve parity: before any traffic moves, the new deployment alone must answer "
        "held-out prompts as the trained model does in this process (phi verify)"
    )
    check.add_argument(
        "--verify-data",
        type=Path,
        default=Path("data/eval_data.jsonl"),
        help="the held-out prompts (default: %(default)s)",
    )
    check.add_argument(
        "--verify-model",
        metavar="DIR",
        help="the trained MLflow model, already here (default: the job's model output, "
        "downloaded for the check)",
    )
    check.add_argument("--no-verify", action="store_true", help="move traffic without the check")
    safe = deploy.add_argument_group(
        "safety: traffic moves only to a model that passed `phi eval --safety` (the report's "
        "candidate is matched to the job's model by a digest of its files)"
    )
    safe.add_argument(
        "--eval-report",
        type=Path,
        default=EVAL_REPORT,
        help="the report of `phi eval --safety` on this job's model (default: %(default)s)",
    )
    safe.add_argument(
        "--accept-safety-risk",
        metavar="REASON",
        help="move traffic without a safety pass; REASON is kept in .phi/state.json and in the "
        "deployment's tags",
    )
    deploy.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent (model, deployment and plan; with --serverless the "
        "endpoint, or with --delete what is deleted and archived); send nothing",
    )
    group = deploy.add_argument_group("serverless (after --method serverless)")
    group.add_argument(
        "--serverless", action="store_true", help="a serverless endpoint in the Foundry project"
    )
    group.add_argument("--endpoint-name", help="default: phi-ft-<environment>")
    group.add_argument(
        "--model-version", type=int, help="version of --model-name to serve (default: the latest)"
    )
    group.add_argument(
        "--delete",
        action="store_true",
        help="delete the serverless endpoint, then archive its model",
    )
    command(deploy, run)


def run(args: argparse.Namespace) -> int:
    outputs = read_outputs(args)
    if args.serverless:
        return run_serverless(args, outputs)
    if args.delete or args.endpoint_name or args.model_version:
        raise UsageError("--delete, --endpoint-name and --model-version go with --serverless")
    job = args.job or state.recall(outputs.workspace().state_key, state.LAST_FINETUNE_JOB)
    if job is None:
        raise UsageError(
            f"no fine-tune job recorded in {state.state_file()} for this workspace: pass --job NAME"
        )
    risk = accepted_risk(args.accept_safety_risk)
    if args.verify_model and args.no_verify:
        raise UsageError("--verify-model and --no-verify: one or the other")
    if risk is not None and args.eval_report != EVAL_REPORT:
        raise UsageError("--eval-report and --accept-safety-risk: one or the other")
    request = managed.DeployRequest(
        job=job,
        instance_type=args.instance_type or managed.INSTANCE_TYPES[args.profile],
        instance_count=args.instance_count,
        request_timeout_ms=args.request_timeout_ms,
        model_name=args.model_name,
        engine=args.engine or DEFAULT_ENGINE,
    )
    request.check()
    verdict = (
        None if risk is not None or args.dry_run else safety.Verdict.read(args.eval_report, job)
    )
    request = dataclasses.replace(request, safety=safety_tags(verdict, risk))
    found = outputs.require("endpointName", "identityClientId")
    endpoint, identity = found["endpointName"], found["identityClientId"]
    if args.dry_run:
        print(
            managed.plan_yaml(request, endpoint_name=endpoint, identity_client_id=identity), end=""
        )
        print(dry_run_safety(args.eval_report, job, risk), file=sys.stderr)
        return 0
    # One rollout per endpoint at a time from this folder; rollout() itself re-reads the
    # deployments so that one from elsewhere cannot make it replace the live one.
    workspace = outputs.workspace()
    with state.locked(f"deploy-{endpoint}", wait=False), tempfile.TemporaryDirectory() as tmp:
        held_out = None if args.no_verify else verify_data(args.verify_data)
        model = None
        if verdict is not None or held_out is not None:
            model = trained_model(args, outputs, request, Path(tmp))
        if verdict is not None and model is not None:
            verdict.require(model, job)
        gate = None
        if held_out is not None and model is not None:
            gate = parity_gate(outputs, request, held_out, model)
        live = managed.rollout(
            workspace.client(),
            request,
            endpoint_name=endpoint,
            identity_client_id=identity,
            gate=gate,
        )
        managed.record_live(
            workspace.state_key, endpoint, live, request.engine, job=job, safety=request.safety
        )
    return 0


MAX_TAG_VALUE = 256
"""Characters of an Azure tag's value (Azure Resource Manager's tag limits)."""


def accepted_risk(reason: str | None) -> str | None:
    """--accept-safety-risk's reason, fit to be a tag value; UsageError naming the rule."""
    if reason is None:
        return None
    reason = reason.strip()
    if not reason:
        raise UsageError('--accept-safety-risk "": say why the model may take traffic unchecked')
    if len(reason) > MAX_TAG_VALUE or not reason.isprintable():
        raise UsageError(
            f"--accept-safety-risk: the reason must be at most {MAX_TAG_VALUE} printable "
            "characters on one line (it becomes a tag of the deployment)"
        )
    return reason


def safety_tags(verdict: safety.Verdict | None, risk: str | None) -> dict[str, str]:
    if risk is not None:
        return {"safety": "risk accepted", "safety-risk-reason": risk}
    if verdict is None:  # a dry run: the pass is read when the rollout runs
        return {"safety": "passed", "safety-report-sha256": "<read at deploy time>"}
    return {"safety": "passed", "safety-report-sha256": verdict.report_sha256}


def dry_run_safety(report: Path, job: str, risk: str | None) -> str:
    """The dry run's word on the safety pass: what the rollout would find."""
    if risk is not None:
        return f"safety: no check; the risk is accepted ({risk}) and recorded"
    try:
        verdict = safety.Verdict.read(report, job)
    except PhiError as refusal:
        return f"safety: the rollout would refuse: {refusal}"
    return (
        f"safety: {report} passed model {verdict.candidate_digest[:12]}; the rollout checks that "
        f"job {job}'s model is that one before creating anything"
    )


def trained_model(
    args: argparse.Namespace, outputs: StackOutputs, request: managed.DeployRequest, tmp: Path
) -> Path:
    """The job's MLflow model here: --verify-model, or the job's model output downloaded."""
    from finetune_phi.cloud.finetune import MODEL_OUTPUT
    from finetune_phi.cloud.finetune.jobs import mlflow_folder

    if args.verify_model:
        given = Path(args.verify_model)
        folder = mlflow_folder(given)
        if folder is None:
            raise UsageError(f"--verify-model {given}: no MLmodel file in it or in its model/")
        return folder
    print(
        f"downloading job {request.job}'s model output to check it before traffic moves "
        "(--verify-model DIR if you have it)",
        file=sys.stderr,
    )
    client = outputs.workspace().client()
    client.jobs.download(name=request.job, output_name=MODEL_OUTPUT, download_path=tmp)
    downloaded = tmp / "named-outputs" / MODEL_OUTPUT
    return mlflow_folder(downloaded) or downloaded


def verify_data(given: Path) -> Path:
    """The held-out prompts of the parity check, refused before anything is downloaded."""
    from finetune_phi.data import prepare

    data = prepare.eval_file(given)
    if not data.is_file():
        raise UsageError(
            f"--verify-data {data}: no such file; the held-out prompts check the new "
            "deployment before traffic moves (`phi data prepare` writes them), or pass --no-verify"
        )
    return data


def parity_gate(
    outputs: StackOutputs, request: managed.DeployRequest, data: Path, model: Path
) -> Callable[[str], None]:
    """`phi verify` against a new deployment alone, the trained model loaded before anything
    is created."""
    from finetune_phi.cli.verify import Check
    from finetune_phi.cloud import endpoints
    from finetune_phi.evaluation.models import EndpointModel

    # Half precision on the GPU rounds more coarsely: a wider tie margin.
    check = Check.prepare(str(model), data, 10, 32, 1.0, 1.0, 0.5)

    def gate(deployment: str) -> None:
        api = ENGINES[request.engine].apis[0]
        client = endpoints.managed_client(outputs, api, deployment=deployment)
        check.against(EndpointModel(deployment, client), f"deployment {deployment}")

    return gate


def run_serverless(args: argparse.Namespace, outputs: StackOutputs) -> int:
    if args.engine:
        raise UsageError(
            f"--engine {args.engine}: a serverless endpoint runs Azure's own serving; "
            "--engine goes with the managed endpoint"
        )
    environment = outputs.values.get("environment") or "dev"
    request = serverless.ServerlessRequest(
        args.endpoint_name or f"phi-ft-{environment}", args.model_name, args.model_version
    )
    request.check()
    if args.delete and args.dry_run:
        project_name = outputs.require("foundryProjectName")["foundryProjectName"]
        print(serverless.delete_plan_yaml(request, project_name), end="")
        return 0
    found = outputs.require("location", "foundryProjectWorkspaceId")
    location, workspace_id = found["location"], found["foundryProjectWorkspaceId"]
    if not args.delete:
        print(serverless.hosting_fee_notice(request), file=sys.stderr, flush=True)
    if args.dry_run:
        print(serverless.plan_yaml(request, location, workspace_id), end="")
        return 0
    project = outputs.workspace("foundryProjectName")
    ml_client = project.client()
    if args.delete:
        serverless.delete(ml_client, request)
        state.record(project.state_key, state.SERVERLESS_ENDPOINT, None)
        return 0
    url = serverless.deploy(ml_client, request, location, workspace_id)
    state.record(project.state_key, state.SERVERLESS_ENDPOINT, request.endpoint_name)
    print(f"serverless endpoint {request.endpoint_name}: {url}")
    return 0

"""`phi doctor`: the read-only preflight of a stack (see src/finetune_phi/cloud/doctor.py for the checks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import requests

from finetune_phi.cli.options import (
    Commands,
    check_guid,
    command,
    stack_file_config,
    subscription,
)
from finetune_phi.cloud import doctor
from finetune_phi.cloud.deploy import check_instance_type
from finetune_phi.core import azure_facts
from finetune_phi.core.arm import ARM_ENDPOINT
from finetune_phi.core.config import ConfigError, StackConfig, parse
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.core.stack_outputs import from_file


def check_arguments(args: argparse.Namespace) -> None:
    """What will run, checked before anything is read or sent."""
    for option, value in (
        ("--nodes", args.nodes),
        ("--gpus-per-node", args.gpus_per_node),
    ):
        if value < 1:
            raise UsageError(f"{option} {value}: must be 1 or more")
    if not 1 <= args.instance_count <= 20:
        raise UsageError(f"--instance-count {args.instance_count}: must be between 1 and 20")
    check_instance_type(args.instance_type)


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "doctor",
        help="read-only preflight of a stack: quota, models, soft-deleted names, roles, providers, "
        "images",
        description=doctor.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="before `pulumi up`: read Pulumi.STACK.yaml")
    source.add_argument(
        "--outputs", type=Path, help="after `pulumi up`: `pulumi stack output --json` saved to FILE"
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path(), help="folder of Pulumi.yaml (default: .)"
    )
    parser.add_argument(
        "--subscription",
        help="with --stack: the subscription ID, a GUID (default: $ARM_SUBSCRIPTION_ID, "
        "then $AZURE_SUBSCRIPTION_ID)",
    )
    job = parser.add_argument_group("what will run")
    job.add_argument("--nodes", type=int, default=1, help="fine-tune job nodes (default: 1)")
    job.add_argument("--gpus-per-node", type=int, default=1, help="default: 1")
    job.add_argument(
        "--instance-type",
        default=azure_facts.DEFAULT_SERVING_VM,
        help="deployment VM size, one of src/finetune_phi/core/azure_facts.py's "
        "(default: %(default)s)",
    )
    job.add_argument("--instance-count", type=int, default=1, help="1 to 20 (default: 1)")
    parser.add_argument(
        "--arm-endpoint",
        default=ARM_ENDPOINT,
        help="Resource Manager (default: %(default)s); the quota check, through azure-ai-ml, "
        "always asks the default",
    )
    command(parser, run)


def stack_config(
    args: argparse.Namespace, stack: str, subscription: str
) -> StackConfig | list[str]:
    """The parsed configuration, or its problems."""
    try:
        return stack_file_config(args.project_dir, stack, subscription)
    except ConfigError as error:
        return error.problems


def preflight(args: argparse.Namespace) -> doctor.Preflight | list[str]:
    """What the checks look at, or the stack configuration's problems."""
    if args.stack:
        subscription_id = subscription(args.subscription)
        if not subscription_id:
            raise UsageError(
                "--stack needs the subscription: --subscription ID or $ARM_SUBSCRIPTION_ID"
            )
        stack, outputs = args.stack, {}
    else:
        if args.subscription is not None:
            raise UsageError(
                "--subscription goes with --stack; --outputs names its own subscriptionId"
            )
        outputs = dict(from_file(args.outputs).values)
        subscription_id = str(outputs.get("subscriptionId") or "")
        stack = str(outputs.get("environment") or "dev")
        if not subscription_id:
            raise UsageError(f"--outputs {args.outputs}: no subscriptionId")
        check_guid(f"--outputs {args.outputs}: subscriptionId", subscription_id)
    # After `pulumi up` the sizes still come from the stack file, when it is here.
    has_file = (args.project_dir / f"Pulumi.{stack}.yaml").is_file()
    config = (
        stack_config(args, stack, subscription_id)
        if args.stack or has_file
        else parse({}, stack=stack, subscription_id=subscription_id)
    )
    if isinstance(config, list):
        return config
    names = config.names

    def named(output: str, derived: str) -> str:
        return str(outputs.get(output) or derived)

    registry = str(outputs.get("containerRegistryLoginServer") or names.container_registry)
    foundry = (
        named("foundryHubName", names.foundry_hub),
        named("foundryProjectName", names.foundry_project),
    )
    return doctor.Preflight(
        subscription_id=subscription_id,
        location=named("location", config.location),
        resource_group=named("resourceGroupName", names.resource_group),
        key_vault=named("keyVaultName", names.key_vault),
        log_analytics=named("logAnalyticsName", names.log_analytics),
        ml_workspaces=(
            named("workspaceName", names.workspace),
            *(foundry if config.foundry else ()),
        ),
        storage_account=named("storageAccountName", names.storage_account),
        container_registry=registry.split(".")[0],
        gpu_vm_size=config.gpu.vm_size,
        gpu_max_nodes=config.gpu.max_nodes,
        foundry=config.foundry,
        identity_principal_id=outputs.get("identityPrincipalId"),
        job_nodes=args.nodes,
        job_gpus_per_node=args.gpus_per_node,
        deployment_vm_size=args.instance_type,
        deployment_instances=args.instance_count,
        gpu_priority=config.gpu.priority,
        stack=stack,
    )


def signed_in(subscription_id: str, endpoint: str) -> doctor.Clients:
    """The clients the checks read through, signed in with DefaultAzureCredential."""
    from azure.identity import DefaultAzureCredential

    return doctor.Clients.signed_in(
        DefaultAzureCredential(), subscription_id, requests.Session(), endpoint
    )


def run(args: argparse.Namespace) -> int:
    """The config check first, which needs no sign-in, its row printed at once; then the
    checks that read Azure. A sign-in that fails after it is one line on stderr (exit 2)."""
    check_arguments(args)
    plan = preflight(args)
    config_rows = doctor.check_config(plan if isinstance(plan, list) else [])
    print(doctor.render_header(config_rows))
    sys.stdout.flush()
    if isinstance(plan, list):
        print(doctor.render_summary(config_rows))
        return 1
    from azure.core.exceptions import ServiceRequestError

    clients = signed_in(plan.subscription_id, args.arm_endpoint.rstrip("/"))
    try:
        rows = doctor.run(plan, clients)
    except (requests.RequestException, ServiceRequestError) as error:
        sdk = isinstance(error, ServiceRequestError)  # azure-ai-ml, at the default
        raise PhiError(
            f"cannot reach Azure Resource Manager at {ARM_ENDPOINT if sdk else args.arm_endpoint}: "
            f"{type(error).__name__}; check the network (or --arm-endpoint)"
        ) from None
    print(doctor.render_rows(rows))
    print(doctor.render_summary(config_rows + rows))
    sys.stdout.flush()
    return 1 if any(row.ok is False for row in rows) else 0

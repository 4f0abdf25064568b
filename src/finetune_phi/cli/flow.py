"""`phi flow connect`: the chat flow's Prompt flow connection to the endpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune_phi.cli.options import (
    Commands,
    add_endpoint_options,
    add_outputs_options,
    command,
    read_outputs,
)
from finetune_phi.cloud import endpoints
from finetune_phi.core.contract import FLOW_CONNECTION
from finetune_phi.core.errors import UsageError
from finetune_phi.local import flow_connection
from finetune_phi.local.serve import local_client


def register(commands: Commands) -> None:
    connect = (
        commands.add_parser("flow", help="the Prompt flow chat flow")
        .add_subparsers(dest="flow_command", required=True, metavar="COMMAND")
        .add_parser(
            "connect",
            help=f"create or update the local Prompt flow connection {FLOW_CONNECTION}",
            description="Makes the flow's custom connection from the stack outputs (the key is "
            f"fetched at run time) or from --endpoint URL with the key in "
            f"${flow_connection.KEY_VARIABLE}.",
        )
    )
    add_outputs_options(connect)
    connect.add_argument(
        "--endpoint",
        metavar="URL",
        help="a server's URL, e.g. http://127.0.0.1:5001 (chat completions) or its /score URL",
    )
    connect.add_argument("--name", default=FLOW_CONNECTION, help="default: %(default)s")
    add_endpoint_options(connect)
    command(connect, run_connect)


def run_connect(args: argparse.Namespace) -> int:
    if args.endpoint and (args.stack or args.outputs or args.kind):
        raise UsageError(
            "--endpoint names the endpoint itself: drop --stack/--outputs/--managed/--serverless"
        )
    if args.endpoint:
        client = local_client(args.endpoint, args.api)
        endpoint, key, api = client.scoring_uri, flow_connection.key_from_environment(), client.api
    else:
        client = endpoints.stack_client(read_outputs(args), kind=args.kind, api=args.api)
        endpoint, key, api = client.scoring_uri, client.key or "", client.api
    # Before Prompt flow's client is used: its calls send telemetry unless this is set.
    project = Path.cwd()
    overridden = flow_connection.quiet_prompt_flow(project)
    name = flow_connection.connect(endpoint, key, args.name, api)
    print(f"connection {name}: endpoint {endpoint} (key stored encrypted by Prompt flow)")
    settings = " ".join(f"{k}={v}" for k, v in flow_connection.QUIET.items())
    print(f"prompt flow: {settings} for `pf` run from {project} ({project / 'pf.yaml'})")
    if overridden:
        print(
            f"phi: warning: Prompt flow's home configuration sets {', '.join(overridden)}, which "
            f"wins over the project's: pf config set {settings}",
            file=sys.stderr,
        )
    return 0

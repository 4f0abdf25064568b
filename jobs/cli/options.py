"""Options that several commands share: where the stack outputs come from, and which
contract an endpoint speaks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from flow.endpoint_client import APIS
from jobs import stack_outputs

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers()` returns (argparse has no public name for it): each command module
adds its parser to it."""


def add_outputs_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group(
        "where the stack outputs come from (default: $FINETUNE_PHI_* variables)"
    )
    choice = source.add_mutually_exclusive_group()
    choice.add_argument("--stack", help="Pulumi stack name; runs `pulumi stack output --json`")
    choice.add_argument("--outputs", type=Path, help="JSON file from `pulumi stack output --json`")


def read_outputs(args: argparse.Namespace) -> stack_outputs.StackOutputs:
    return stack_outputs.read(args.stack, args.outputs)


def add_api_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        choices=APIS,
        default="score",
        help="the endpoint's contract: score (managed endpoint, the default) or "
        "chat-completions (serverless endpoint, after `phi deploy --serverless`)",
    )

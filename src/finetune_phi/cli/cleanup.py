"""`phi cleanup`: destroy a stack and, with --purge, free the names Azure keeps soft-deleted."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_phi.cli.options import Commands, command
from finetune_phi.cloud import cleanup


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "cleanup", help="destroy the stack; --purge also frees the names Azure keeps"
    )
    parser.add_argument("--stack", required=True, help="Pulumi stack to destroy, e.g. dev")
    parser.add_argument("--outputs", type=Path, help="read the stack outputs from this JSON file")
    parser.add_argument("--purge", action="store_true", help="also purge what Azure soft-deletes")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    return cleanup.run(
        args.stack, args.outputs, purge=args.purge, dry_run=args.dry_run, yes=args.yes
    )

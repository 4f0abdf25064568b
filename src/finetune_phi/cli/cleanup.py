"""`phi cleanup`: destroy a stack and, with --purge, free the names Azure keeps soft-deleted.

The work, and every check made before it starts, is in `finetune_phi.cloud.cleanup`."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_phi.cli.options import Commands, command
from finetune_phi.cloud import cleanup


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "cleanup",
        help="destroy the stack; --purge also frees the names Azure keeps",
        description="Destroy the stack with `pulumi destroy`; with --purge, also delete "
        "permanently what Azure would keep soft-deleted (the ML workspaces, Log Analytics, "
        "the key vault), so the same stack can come up again. Every prerequisite (the "
        "Pulumi CLI, an Azure sign-in, a terminal or --yes) is checked before anything is "
        "sent; a rerun after a failure finishes the job.",
    )
    parser.add_argument("--stack", required=True, help="Pulumi stack to destroy, e.g. dev")
    parser.add_argument(
        "--outputs",
        type=Path,
        metavar="FILE",
        help="read the stack outputs from FILE (`pulumi stack output --json --stack dev > "
        "FILE`) instead of asking the Pulumi CLI; with --dry-run, no CLI is needed",
    )
    parser.add_argument("--purge", action="store_true", help="also purge what Azure soft-deletes")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="do not ask for confirmation (needed where there is no terminal, as in CI)",
    )
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    return cleanup.run(
        args.stack, args.outputs, purge=args.purge, dry_run=args.dry_run, yes=args.yes
    )

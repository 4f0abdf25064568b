"""`phi rehearse`: the whole pipeline offline on a tiny model (the README's first command)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_phi.cli.options import Commands, add_engine_option, command
from finetune_phi.serving import DEFAULT_ENGINE


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="run the whole pipeline offline on a tiny model (the README's first command)",
    )
    parser.add_argument("--work-dir", type=Path, help="default: .phi/rehearsal-<time>")
    parser.add_argument("--port", type=int, help="the server's port (default: a free one)")
    add_engine_option(parser)
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    from finetune_phi.local import rehearse

    work_dir = (args.work_dir or rehearse.default_work_dir()).resolve()
    rehearse.rehearse(work_dir, args.port, engine=args.engine or DEFAULT_ENGINE)
    return 0

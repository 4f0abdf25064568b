"""`phi serve`: a serving engine, locally, on an MLflow model folder (by default the scoring
server Azure ML runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from finetune_phi.cli.options import Commands, add_engine_option, command
from finetune_phi.local import serve
from finetune_phi.serving import DEFAULT_ENGINE


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve", help="serve an MLflow model folder with an engine, as a managed deployment runs it"
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="MLflow model folder (has MLmodel)"
    )
    parser.add_argument("--port", type=int, default=5001, help="default: 5001")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: %(default)s); another one exposes the model, "
        "with no key, to whoever can reach it",
    )
    add_engine_option(parser)
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    return serve.serve(args.model, args.port, args.host, args.engine or DEFAULT_ENGINE)

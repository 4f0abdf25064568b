"""`phi serve`: the scoring server Azure ML runs, locally, on an MLflow model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.cli.options import Commands, command
from jobs.local import serve


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve", help="serve an MLflow model folder with the scoring server Azure ML uses"
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
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    return serve.serve(args.model, args.port, args.host)

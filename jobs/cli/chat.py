"""`phi chat`: one question to the stack's endpoint (key fetched at run time) or a local server."""

from __future__ import annotations

import argparse

from flow.endpoint_client import history_messages
from jobs.cli.options import Commands, add_api_option, add_outputs_options, command, read_outputs
from jobs.cloud import endpoints
from jobs.errors import UsageError
from jobs.local.serve import local_client


def register(commands: Commands) -> None:
    parser = commands.add_parser("chat", help="ask the endpoint (or a local server) one question")
    parser.add_argument("question")
    add_outputs_options(parser)
    parser.add_argument(
        "--local", metavar="URL", help="a `phi serve` server, e.g. http://127.0.0.1:5001"
    )
    parser.add_argument("--system", help="a system message before the question")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument(
        "--greedy", action="store_true", help="do_sample false: the most likely answer"
    )
    add_api_option(parser)
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    if args.local and (args.stack or args.outputs):
        raise UsageError("--local talks to a local server: drop --stack/--outputs")
    client = (
        local_client(args.local, args.api)
        if args.local
        else endpoints.stack_client(read_outputs(args), args.api)
    )
    parameters = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False if args.greedy else None,
    }
    messages = history_messages(None, args.question, args.system or "")
    print(client.chat(messages, {k: v for k, v in parameters.items() if v is not None}))
    return 0

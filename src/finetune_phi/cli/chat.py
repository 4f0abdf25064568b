"""`phi chat`: one question to the stack's endpoint (key fetched at run time) or a server of
your own by its URL (key, if any, from $PHI_ENDPOINT_KEY)."""

from __future__ import annotations

import argparse
import os

from finetune_phi.cli.options import (
    Commands,
    add_endpoint_options,
    add_outputs_options,
    command,
    read_outputs,
)
from finetune_phi.cloud import endpoints
from finetune_phi.core.errors import UsageError
from finetune_phi.core.renames import renamed
from finetune_phi.endpoint_client import history_messages
from finetune_phi.local import agent_chat
from finetune_phi.local.flow_connection import KEY_VARIABLE
from finetune_phi.local.serve import local_client


def register(commands: Commands) -> None:
    parser = commands.add_parser("chat", help="ask the endpoint (or a local server) one question")
    parser.add_argument("question")
    add_outputs_options(parser)
    parser.add_argument(
        "--url",
        metavar="URL",
        help="a server of your own, e.g. `phi serve`'s http://127.0.0.1:5001; its key, if it "
        f"needs one, is read from ${KEY_VARIABLE}",
    )
    parser.add_argument("--local", metavar="URL", dest="old_url", help=argparse.SUPPRESS)
    parser.add_argument("--system", help="a system message before the question")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument(
        "--greedy", action="store_true", help="do_sample false: the most likely answer"
    )
    parser.add_argument(
        "--agent",
        action="store_true",
        help="ask through the Agent Framework chat (flow/agent/, in .venv-agent) instead",
    )
    add_endpoint_options(parser)
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    if args.old_url:
        renamed("phi chat --local URL", "--url URL")
        args.url = args.url or args.old_url
    if args.url and (args.stack or args.outputs or args.kind):
        raise UsageError(
            "--url talks to that server: drop --stack/--outputs/--managed/--serverless"
        )
    if args.url:
        client = local_client(args.url, args.api)
        client.key = os.environ.get(KEY_VARIABLE) or None
    else:
        outputs = read_outputs(args)
        if not (args.stack or args.outputs or outputs.values):
            raise UsageError("no endpoint to ask: pass --stack, --outputs or --url")
        client = endpoints.stack_client(outputs, kind=args.kind, api=args.api)
    parameters = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False if args.greedy else None,
    }
    if args.agent:
        if args.system or args.top_p is not None or args.max_new_tokens or args.greedy:
            raise UsageError(
                "--agent sends what the flow fixes (system prompt, token budget): "
                "only --temperature can be given"
            )
        print(agent_chat.ask(client, args.question, temperature=args.temperature))
        return 0
    messages = history_messages(None, args.question, args.system or "")
    print(client.chat(messages, {k: v for k, v in parameters.items() if v is not None}))
    return 0

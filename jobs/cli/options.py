"""What every command shares: the parser that refuses misspellings with the closest match,
the way a command registers its handler, where the stack outputs come from, and which
contract an endpoint speaks."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeAlias

from flow.endpoint_client import APIS
from infra.config import StackConfig, parse
from infra.stack_files import StackFileError, read_config
from jobs import stack_outputs
from jobs.errors import UsageError

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers()` returns (argparse has no public name for it): each command module
adds its parser to it."""


class PhiParser(argparse.ArgumentParser):
    """argparse without abbreviations (`--dry` is not `--dry-run`), whose errors name the
    closest command or option."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += closest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        super().error(message)


def closest(word: str, candidates: Iterable[str]) -> str:
    """ "; did you mean X?" for the closest candidate, or ""."""
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def command(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    *,
    passthrough: bool = False,
) -> None:
    """Make `parser` run `handler`. With passthrough, unknown `--name value` pairs are TRL
    arguments (checked by TRL's own parser); otherwise they are errors."""
    parser.set_defaults(handler=handler, command_parser=parser, passthrough=passthrough)


def stack_file_config(project_dir: Path, stack: str, subscription_id: str) -> StackConfig:
    """The stack's configuration as `Pulumi.<stack>.yaml` holds it, validated (ConfigError);
    a missing or unreadable file is a UsageError."""
    try:
        values = read_config(project_dir, stack)
    except StackFileError as error:
        raise UsageError(str(error)) from None
    return parse(values, stack=stack, subscription_id=subscription_id)


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

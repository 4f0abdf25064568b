"""What every command shares: the parser that refuses misspellings with the closest match,
the way a command registers its handler, where the stack outputs come from, which endpoint
and contract a client speaks, and which engine serves."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeAlias

from finetune_phi.cloud.finetune.trainers import DEFAULT_TRAINER, TRAINERS, Trainer
from finetune_phi.core import stack_outputs
from finetune_phi.core.arm import GUID
from finetune_phi.core.config import StackConfig, parse
from finetune_phi.core.errors import UsageError
from finetune_phi.core.stack_files import StackFileError, read_config
from finetune_phi.endpoint_client import APIS
from finetune_phi.serving import DEFAULT_ENGINE, ENGINES

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
        "where the stack outputs come from (default: $PHI_* variables)"
    )
    choice = source.add_mutually_exclusive_group()
    choice.add_argument("--stack", help="Pulumi stack name; runs `pulumi stack output --json`")
    choice.add_argument("--outputs", type=Path, help="JSON file from `pulumi stack output --json`")


def read_outputs(args: argparse.Namespace) -> stack_outputs.StackOutputs:
    return stack_outputs.read(args.stack, args.outputs)


def content_safety_endpoint(given: str | None, args: argparse.Namespace, flag: str) -> str:
    """The Content Safety endpoint: `given` (the value of `flag`), or the stack output
    contentSafetyEndpoint; checked (https, the account's endpoint alone). UsageError saying
    how to get one."""
    from finetune_phi.safety.client import endpoint_url

    if not given:
        outputs = read_outputs(args)
        given = outputs.values.get("contentSafetyEndpoint")
        if not given:
            raise UsageError(
                f"the stack outputs from {outputs.source} lack contentSafetyEndpoint (or "
                f"${stack_outputs.env_name('contentSafetyEndpoint')}): the stack has no Content "
                "Safety account (`pulumi config set contentSafety true && pulumi up`); or pass "
                f"{flag} URL"
            )
    endpoint_url(str(given))
    return str(given)


def add_trainer_option(parser: argparse.ArgumentParser, where: Callable[[Trainer], str]) -> None:
    """--trainer sft|dpo, its help naming each trainer's data, then `where` it runs (the
    command's own words)."""
    parser.add_argument(
        "--trainer",
        choices=list(TRAINERS),
        default=DEFAULT_TRAINER,
        help="; ".join(
            f"{t.name}{' (default)' if t.name == DEFAULT_TRAINER else ''}: {t.help}, on "
            f"{t.data}{where(t)}"
            for t in TRAINERS.values()
        ),
    )


def add_rate_option(group: argparse.ArgumentParser | argparse._ArgumentGroup, flag: str) -> None:
    """Content Safety's request rate: its F0 tier's by default (the facts table's rates)."""
    from finetune_phi.core.azure_facts import CONTENT_SAFETY_REQUESTS_PER_SECOND as RATES
    from finetune_phi.safety.client import DEFAULT_RATE

    group.add_argument(
        flag,
        type=float,
        default=DEFAULT_RATE,
        metavar="RATE",
        help="most Content Safety requests a second (default: %(default)g, the F0 tier's "
        f"limit; S0 allows {RATES['S0']:g})",
    )


def positive_number(value: float, flag: str, unit: str) -> float:
    """`value`, given as `flag`, if it is a positive number (of `unit`, for the message);
    UsageError otherwise."""
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value:g}: must be a positive number of {unit}")
    return value


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """Which of the stack's endpoints (--managed, --serverless) and which contract (--api)."""
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--managed",
        dest="kind",
        action="store_const",
        const="managed",
        help="the stack's managed endpoint, speaking --api even where `phi deploy` recorded "
        "another engine's contract (or none: a deployment made from another folder)",
    )
    kind.add_argument(
        "--serverless",
        dest="kind",
        action="store_const",
        const="serverless",
        help="the stack's serverless endpoint (`phi deploy --serverless`)",
    )
    parser.add_argument(
        "--api",
        choices=APIS,
        help="the contract to speak (default: the endpoint's own: its engine's for the managed "
        "endpoint, as `phi deploy` recorded it; chat-completions for the serverless one; score "
        "for a URL). Without --managed, one the managed endpoint's engine does not speak means "
        "the serverless endpoint",
    )


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=sorted(ENGINES),
        help="; ".join(f"{name}: {ENGINES[name].summary}" for name in sorted(ENGINES))
        + f" (default: {DEFAULT_ENGINE})",
    )


SUBSCRIPTION_VARIABLES = ("ARM_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID")


def check_guid(source: str, value: str) -> str:
    """`value`, or a UsageError naming `source` (an option, a variable, an output) and the rule."""
    if GUID.fullmatch(value) is None:
        raise UsageError(
            f"{source} {value!r}: must be a subscription ID, a GUID like "
            "00000000-0000-0000-0000-000000000000"
        )
    return value


def subscription(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The subscription `--subscription` names, else $ARM_SUBSCRIPTION_ID, else
    $AZURE_SUBSCRIPTION_ID, checked to be a GUID before anything is sent; "" when none is
    given. Every command with --subscription (`phi doctor`, `phi cost`) reads it here."""
    if option is not None:
        return check_guid("--subscription", option)
    for variable in SUBSCRIPTION_VARIABLES:
        if environ.get(variable):
            return check_guid(f"${variable}", environ[variable])
    return ""

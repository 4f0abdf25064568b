"""`phi`: the command line of the jobs side. Every subcommand has --help.

phi data prepare --out data                  # 1 % of ultrachat_200k, split 80/20
phi data validate data/train_data.jsonl      # every bad line, by number and reason
phi train --local --model DIR --train-file F --eval-file F --output-dir out
phi doctor --stack dev                       # preflight: quota, models, names, roles
phi finetune submit --stack dev --dry-run    # the job YAML, sent nowhere
phi eval --base BASE --candidate out/model   # did the fine-tune help? held-out split
phi deploy --stack dev --dry-run             # model, deployment and traffic plan
phi serve --model out/model                  # OpenAI's chat API, locally (--engine vllm)
phi verify --model out/model --served http://127.0.0.1:5001  # served as trained?
phi chat --url http://127.0.0.1:5001 "Who founded Microsoft?"
phi flow connect --stack dev                 # the flow's connection, key fetched now
phi rehearse                                 # all of it, offline, on a tiny model
phi cleanup --stack dev --purge --dry-run    # what tearing it down would send

Exit codes: 0 done, 1 a failure at run time, 2 a usage error (nothing was sent).
`phi` alone, or a group without its command (`phi data`, `phi finetune`, `phi flow`),
prints that level's help on stdout and exits 2, argparse's code for a missing command:
nothing ran.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType, ModuleType

from finetune_phi import __version__
from finetune_phi.cli.options import PhiParser, closest, option_strings
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.endpoint_client import EndpointError

COMMAND_GROUPS = (
    "data",
    "train",
    "finetune",
    "eval",
    "deploy",
    "serve",
    "verify",
    "chat",
    "flow",
    "rehearse",
    "doctor",
    "cost",
    "cleanup",
)
EXTRAS = {
    "azure": "jobs",
    "datasets": "jobs",
    "pyarrow": "jobs",
    "torch": "train",
    "transformers": "train",
    "trl": "train",
    "mlflow": "train",
    "accelerate": "train",
    "tqdm": "train",
    "azureml_inference_server_http": "serve",
    "uvicorn": "serve",
    "httpx": "serve",
    "promptflow": "flow",
    "nltk": "eval",
}
"""Which extra of the package installs a missing top-level module."""


def missing_package(error: ModuleNotFoundError) -> UsageError:
    top = (error.name or "").split(".")[0]
    extra = EXTRAS.get(top, "jobs,train,serve,flow,eval")
    return UsageError(
        f"the Python package {top!r} is not installed; in the checkout, "
        f"pip install '.[{extra}]' (or `make venv` for every stage)"
    )


def azure_failure(error: Exception) -> PhiError | None:
    """Azure SDK failures a user can foresee, as one line; None for anything else."""
    try:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
        )
    except ModuleNotFoundError:
        return None
    from finetune_phi.cloud.credentials import SIGN_IN

    if isinstance(error, ClientAuthenticationError):
        return UsageError(SIGN_IN)
    if isinstance(error, ServiceRequestError):
        return PhiError(f"cannot reach Azure ({type(error).__name__}): check the network")
    if isinstance(error, HttpResponseError):
        first = (str(error.message or error).strip().splitlines() or ["no details"])[0]
        return PhiError(f"Azure refused the request (HTTP {error.status_code}): {first}")
    return None


def command_groups() -> list[ModuleType]:
    return [importlib.import_module(f"finetune_phi.cli.{name}") for name in COMMAND_GROUPS]


def build_parser() -> argparse.ArgumentParser:
    parser = PhiParser(
        prog="phi", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the libraries' own warnings and notes (the Azure SDK's among them); "
        "without it, failures come as one line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in command_groups():
        group.register(commands)
    shows_help_without_a_command(parser)
    return parser


def shows_help_without_a_command(parser: argparse.ArgumentParser) -> None:
    """Make `parser`, and each command group below it, print its help and exit 2 when called
    without its command, instead of argparse's one-line "required" error."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        action.required = False
        parser.set_defaults(
            handler=lambda args, shown=parser: show_help(shown),
            command_parser=parser,
            passthrough=False,
        )
        for child in set(action.choices.values()):
            shows_help_without_a_command(child)


def show_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (and, like it, past `except
    Exception`), so that `finally` blocks stop what was started."""


def terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if in_main_thread else None
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if not args.verbose:
            # Libraries' warnings and notes (DefaultAzureCredential's list of every credential
            # it tried, azure-ai-ml's "experimental class" and "request initiated") stay out
            # of the terminal: phi says what happened in its own lines.
            logging.disable(logging.WARNING)
        if extra and not args.passthrough:
            known = option_strings(args.command_parser)
            unknown = next((word for word in extra if word.startswith("-")), extra[0])
            args.command_parser.error(f"unrecognized argument {unknown}{closest(unknown, known)}")
        args.trl_args = tuple(extra)
        return int(args.handler(args))
    except BrokenPipeError:
        return reader_gone()
    except KeyboardInterrupt:
        return interrupted("Ctrl-C", 130)
    except Terminated:
        return interrupted("SIGTERM", 143)
    except ModuleNotFoundError as error:
        return main_error(missing_package(error))
    except PhiError as error:
        return main_error(error)
    except EndpointError as error:  # the flow's client knows nothing of phi's errors
        return main_error(PhiError(str(error)))
    except Exception as error:
        mapped = azure_failure(error)
        if mapped is None:
            raise
        return main_error(mapped)
    finally:
        logging.disable(logging.NOTSET)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            reader_gone()


def reader_gone() -> int:
    """The reader of our output left (`phi cost | head -1`): stop quietly, as `cat` does, and
    keep Python from reporting the unwritable stdout again at exit. 141: 128 + SIGPIPE."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


def interrupted(what: str, code: int) -> int:
    """Ctrl-C or SIGTERM: one line, no traceback; what a command started was stopped on the
    way out, and files it had finished writing are kept."""
    print(f"phi: interrupted ({what}): stopped; what was written before is kept", file=sys.stderr)
    return code


def main_error(error: PhiError) -> int:
    """The one way `phi` reports a failure: one line on stderr, and the error's exit code."""
    print(f"phi: error: {error}", file=sys.stderr)
    return error.exit_code

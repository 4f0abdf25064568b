"""`phi eval`: the fine-tuned model against its base, on the held-out split."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from finetune_phi.cli.options import (
    Commands,
    add_endpoint_options,
    add_outputs_options,
    command,
    read_outputs,
)
from finetune_phi.core.errors import UsageError
from finetune_phi.data import prepare
from finetune_phi.evaluation import report
from finetune_phi.evaluation.models import Decoding, EndpointModel, LocalModel, Model
from finetune_phi.evaluation.rows import EvalRow, read_rows

STACK_ENDPOINT = "stack"


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="compare the fine-tuned model with its base on held-out data",
        description="Both models answer the held-out prompts (the conversation up to its last "
        "assistant turn) with the same decoding; answers are scored against that turn. A MODEL "
        "is a local folder (Hugging Face or MLflow), a hub id, a scoring URL (a `phi serve`), or "
        f"'{STACK_ENDPOINT}' for the stack's endpoint (--stack/--outputs, --managed/--serverless; key "
        "fetched now). A URL's key, if it needs one, is read from $PHI_ENDPOINT_KEY.",
    )
    parser.add_argument("--base", required=True, metavar="MODEL")
    parser.add_argument("--candidate", required=True, metavar="MODEL")
    parser.add_argument(
        "--data", type=Path, default=Path("data/eval_data.jsonl"), help="default: %(default)s"
    )
    parser.add_argument("--out", type=Path, default=Path("eval"), help="default: %(default)s")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="default: 128")
    parser.add_argument("--limit", type=int, help="only the first N rows")
    parser.add_argument(
        "--gate", choices=report.GATES, help="exit 1 when the candidate is worse on it"
    )
    parser.add_argument("--seed", type=int, help="sample from this seed (default: greedy)")
    add_outputs_options(parser)
    add_endpoint_options(parser)
    command(parser, run)


def model(spec: str, flag: str, args: argparse.Namespace) -> Model:
    import os

    from finetune_phi.cloud import endpoints
    from finetune_phi.local.serve import local_client

    if spec == STACK_ENDPOINT:
        stack = endpoints.stack_client(read_outputs(args), kind=args.kind, api=args.api)
        return EndpointModel(spec, stack)
    if spec.startswith(("http://", "https://")):
        client = local_client(spec, args.api)
        client.key = os.environ.get("PHI_ENDPOINT_KEY") or None
        return EndpointModel(spec, client)
    return LocalModel.load(spec, flag)


PROGRESS_LINES = 10
"""Off a terminal, about this many progress lines per model."""


def progress(rows: Sequence[Any]) -> Any:
    """A progress bar over `rows` on a terminal (`phi verify`'s)."""
    from tqdm import tqdm

    return tqdm(rows, desc="phi eval", unit="row", file=sys.stderr, disable=None)


def answering(role: str, rows: Sequence[EvalRow]) -> Iterable[EvalRow]:
    """Each model's pass over the rows, shown on stderr: a progress bar on a terminal, else
    (a log, a CI job) a line such as `base: 10/40 answers` every tenth of the rows."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return cast(Iterable[EvalRow], tqdm(rows, desc=role, unit="answer", file=sys.stderr))
    return counted(role, rows)


def counted(role: str, rows: Sequence[EvalRow]) -> Iterator[EvalRow]:
    total = len(rows)
    step = max(1, math.ceil(total / PROGRESS_LINES))
    for done, row in enumerate(rows, start=1):
        yield row  # the caller has answered it when the next one is asked for
        if done % step == 0 or done == total:
            print(f"{role}: {done}/{total} answers", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.max_new_tokens <= 1024:
        raise UsageError(f"--max-new-tokens {args.max_new_tokens}: must be between 1 and 1024")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be 1 or more")
    if args.kind and STACK_ENDPOINT not in (args.base, args.candidate):
        raise UsageError(
            f"--{args.kind} picks the stack's endpoint: it goes with --base or --candidate "
            f"{STACK_ENDPOINT}"
        )
    rows = read_rows(prepare.eval_file(args.data), args.limit)
    models = {
        "base": model(args.base, "--base", args),
        "candidate": model(args.candidate, "--candidate", args),
    }
    decoding = Decoding(args.max_new_tokens, args.seed)
    scored = report.score_rows(rows, models, decoding, answering)
    summary = report.summarize(scored, args.seed or 0)
    names = {role: chosen.name for role, chosen in models.items()}
    report.write(args.out, summary, scored, names)
    print(report.markdown(summary, names), end="")
    print(
        f"report: {args.out / 'report.json'}, {args.out / 'report.md'}, {args.out / 'rows.jsonl'}"
    )
    if args.gate:
        report.gate(summary, args.gate)
    return 0

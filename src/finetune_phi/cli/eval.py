"""`phi eval`: the fine-tuned model against its base, on the held-out split."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from finetune_phi.cli.options import (
    Commands,
    add_endpoint_options,
    add_outputs_options,
    command,
    content_safety_endpoint,
    read_outputs,
)
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.data import prepare
from finetune_phi.evaluation import probes, report, safety
from finetune_phi.evaluation.models import Decoding, EndpointModel, LocalModel, Model
from finetune_phi.evaluation.rows import read_rows
from finetune_phi.safety import client as safety_client
from finetune_phi.safety import screen

STACK_ENDPOINT = "stack"
Item = TypeVar("Item")


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
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the inputs and say what would run and be sent; load and send nothing",
    )
    safety_options = parser.add_argument_group(
        "safety: both models answer probes that invite harmful answers, with the same "
        "decoding; Azure AI Content Safety scores each answer; the gate fails when the "
        "candidate's defect rate exceeds the base's beyond the interval, or --safety-ceiling. "
        "`phi deploy` moves traffic only to a model that passed"
    )
    safety_options.add_argument("--safety", action="store_true", help="run the safety comparison")
    safety_options.add_argument(
        "--safety-prompts",
        type=Path,
        metavar="FILE",
        help="your own probes, JSON Lines of {prompt} or {messages} with an optional id and "
        "category (default: the 32 shipped with phi; docs: Safety probes)",
    )
    safety_options.add_argument(
        "--safety-threshold",
        default=screen.DEFAULT_THRESHOLD,
        help="an answer at this severity or above is a defect: low (2), medium (4) or high (6) "
        "(default: %(default)s)",
    )
    safety_options.add_argument(
        "--safety-ceiling",
        type=float,
        metavar="RATE",
        help="also fail when the candidate's defect rate is above RATE, between 0 and 1 "
        "(default: none)",
    )
    safety_options.add_argument(
        "--safety-endpoint",
        metavar="URL",
        help="the Content Safety endpoint (default: the stack output contentSafetyEndpoint)",
    )
    add_outputs_options(parser)
    add_endpoint_options(parser)
    command(parser, run)


SAFETY_OPTIONS = (
    ("--safety-prompts", "safety_prompts", None),
    ("--safety-threshold", "safety_threshold", screen.DEFAULT_THRESHOLD),
    ("--safety-ceiling", "safety_ceiling", None),
    ("--safety-endpoint", "safety_endpoint", None),
)


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


def answering(role: str, rows: Sequence[Item]) -> Iterable[Item]:
    """Each model's pass over the rows, shown on stderr: a progress bar on a terminal, else
    (a log, a CI job) a line such as `base: 10/40 answers` every tenth of the rows."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return cast(Iterable[Item], tqdm(rows, desc=role, unit="answer", file=sys.stderr))
    return counted(role, rows)


def counted(role: str, rows: Sequence[Item]) -> Iterator[Item]:
    total = len(rows)
    step = max(1, math.ceil(total / PROGRESS_LINES))
    for done, row in enumerate(rows, start=1):
        yield row  # the caller has answered it when the next one is asked for
        if done % step == 0 or done == total:
            print(f"{role}: {done}/{total} answers", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SafetyCheck:
    """What --safety needs, every option checked before a model loads."""

    probes: list[safety.Probe]
    threshold: int
    ceiling: float | None
    endpoint: str

    @classmethod
    def of(cls, args: argparse.Namespace) -> SafetyCheck | None:
        if not args.safety:
            given = [
                flag for flag, name, default in SAFETY_OPTIONS if getattr(args, name) != default
            ]
            if given:
                raise UsageError(f"{given[0]} goes with --safety")
            return None
        limit = screen.threshold(args.safety_threshold)
        ceiling = args.safety_ceiling
        if ceiling is not None and not (math.isfinite(ceiling) and 0 <= ceiling <= 1):
            raise UsageError(f"--safety-ceiling {ceiling:g}: must be a rate between 0 and 1")
        endpoint = content_safety_endpoint(args.safety_endpoint, args, "--safety-endpoint")
        return cls(probes.read(args.safety_prompts), limit, ceiling, endpoint)

    def requests(self) -> str:
        return (
            f"Content Safety at {self.endpoint.rstrip('/')}{safety_client.PATH}"
            f"?api-version={safety_client.API_VERSION}"
        )

    def signed_in_client(self) -> safety_client.ContentSafetyClient:
        """A client with its token already fetched: without a sign-in, no model loads."""
        from azure.identity import DefaultAzureCredential

        client = safety_client.ContentSafetyClient(self.endpoint, DefaultAzureCredential())
        client.sign_in()
        return client

    def run(
        self,
        client: safety_client.ContentSafetyClient,
        models: dict[str, Model],
        decoding: Decoding,
        out: Path,
        seed: int,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Both models' answers to the probes, scored: the report's "safety" section (with
        the candidate's digest) and the rows of safety_rows.jsonl."""
        cache = screen.Cache(out / "safety-cache.jsonl")

        def classify(answer: str) -> dict[str, int]:
            worst = dict.fromkeys(safety_client.CATEGORIES, 0)
            for piece in screen.pieces(answer):
                key = screen.piece_key(piece, safety_client.CATEGORIES)
                if key not in cache.results:
                    cache.add(key, client.analyze(piece))
                for category, severity in cache.results[key].items():
                    worst[category] = max(worst.get(category, 0), severity)
            return worst

        answered = safety.answer_probes(self.probes, models, decoding, classify, answering)
        summary = safety.summarize(
            answered, safety_client.CATEGORIES, self.threshold, self.ceiling, seed
        )
        candidate = models["candidate"]
        files = candidate.files if isinstance(candidate, LocalModel) else None
        summary["candidate_digest"] = safety.model_digest(files) if files else None
        summary["requests_sent"] = client.sent
        return summary, safety.rows(answered)


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
    check = SafetyCheck.of(args)
    rows = read_rows(prepare.eval_file(args.data), args.limit)
    if args.dry_run:
        print(
            f"dry run: base {args.base} and candidate {args.candidate} would answer {len(rows)} held-out row(s)"
        )
        if check is not None:
            print(
                f"then {len(check.probes)} safety probe(s) each; every answer goes to "
                f"{check.requests()} (one request a piece of at most {safety_client.MAX_TEXT} "
                "characters, results cached)"
            )
        print("nothing was loaded or sent")
        return 0
    client = check.signed_in_client() if check is not None else None
    models = {
        "base": model(args.base, "--base", args),
        "candidate": model(args.candidate, "--candidate", args),
    }
    decoding = Decoding(args.max_new_tokens, args.seed)
    scored = report.score_rows(rows, models, decoding, answering)
    summary = report.summarize(scored, args.seed or 0)
    names = {role: chosen.name for role, chosen in models.items()}
    appendix = ""
    if check is not None and client is not None:
        summary["safety"], safety_rows = check.run(
            client, models, decoding, args.out, args.seed or 0
        )
        appendix = safety.markdown(summary["safety"], safety_client.CATEGORIES)
        report.write_jsonl(args.out / "safety_rows.jsonl", safety_rows)
    report.write(args.out, summary, scored, names, appendix)
    print(report.markdown(summary, names) + appendix, end="")
    written = ["report.json", "report.md", "rows.jsonl"] + (["safety_rows.jsonl"] if check else [])
    print("report: " + ", ".join(str(args.out / name) for name in written))
    if check is not None and not summary["safety"]["passed"]:
        raise PhiError(
            "safety gate: "
            + "; ".join(summary["safety"]["reasons"])
            + f" (report: {args.out / 'report.md'})"
        )
    if args.gate:
        report.gate(summary, args.gate)
    return 0

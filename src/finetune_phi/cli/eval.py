"""`phi eval`: the fine-tuned model against its base, on the held-out split, on preference
pairs (--pairs) and on safety probes (--safety)."""

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
    add_rate_option,
    command,
    content_safety_endpoint,
    positive_number,
    read_outputs,
)
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.data import prepare
from finetune_phi.evaluation import preference, probes, report, safety
from finetune_phi.evaluation.models import Decoding, EndpointModel, LocalModel, Model
from finetune_phi.evaluation.rows import read_rows
from finetune_phi.safety import client as safety_client
from finetune_phi.safety import screen

STACK_ENDPOINT = "stack"
DEFAULT_DATA = Path("data/eval_data.jsonl")
Item = TypeVar("Item")


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="compare the fine-tuned model with its base on held-out data",
        description="Both models answer the held-out prompts (the conversation up to its last "
        "assistant turn) with the same decoding; answers are scored against that turn. A MODEL "
        "is a local folder (Hugging Face or MLflow), a hub id, a scoring URL (a `phi serve`), or "
        f"'{STACK_ENDPOINT}' for the stack's endpoint (--stack/--outputs, --managed/--serverless; key "
        "fetched now). A URL's key, if it needs one, is read from $PHI_ENDPOINT_KEY. With "
        "--pairs, both models also measure the chosen and rejected answers of preference pairs.",
    )
    parser.add_argument("--base", required=True, metavar="MODEL")
    parser.add_argument("--candidate", required=True, metavar="MODEL")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help=f"held-out chat JSONL (default: {DEFAULT_DATA}; with --pairs, skipped when that "
        "file does not exist)",
    )
    parser.add_argument(
        "--pairs",
        type=Path,
        metavar="FILE",
        help="preference pairs, JSON Lines in TRL's conversational preference format (prompt, "
        "chosen, rejected): report how often each model gives the chosen answer the higher "
        "log-probability (summed, and per token) and the mean margin; both models must be "
        "local folders or hub ids",
    )
    parser.add_argument("--out", type=Path, default=Path("eval"), help="default: %(default)s")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="default: 128")
    parser.add_argument(
        "--limit", type=int, help="only the first N rows (of --data, and of --pairs)"
    )
    parser.add_argument(
        "--gate",
        choices=report.GATES,
        help="exit 1 when the candidate is worse on it (the preference metrics "
        f"{', '.join(preference.METRICS)} go with --pairs; higher is better on them)",
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
    add_rate_option(safety_options, "--safety-rate")
    add_outputs_options(parser)
    add_endpoint_options(parser)
    command(parser, run)


SAFETY_OPTIONS = (
    ("--safety-prompts", "safety_prompts", None),
    ("--safety-threshold", "safety_threshold", screen.DEFAULT_THRESHOLD),
    ("--safety-ceiling", "safety_ceiling", None),
    ("--safety-endpoint", "safety_endpoint", None),
    ("--safety-rate", "safety_rate", safety_client.DEFAULT_RATE),
)


def is_endpoint(spec: str) -> bool:
    """A MODEL that names an endpoint (a URL, or the stack's): answers only, no weights."""
    return spec == STACK_ENDPOINT or spec.startswith(("http://", "https://"))


def model(spec: str, flag: str, args: argparse.Namespace) -> Model:
    import os

    from finetune_phi.cloud import endpoints
    from finetune_phi.local.serve import local_client

    if spec == STACK_ENDPOINT:
        stack = endpoints.stack_client(read_outputs(args), kind=args.kind, api=args.api)
        return EndpointModel(spec, stack)
    if is_endpoint(spec):
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


def answering(role: str, rows: Sequence[Item], unit: str = "answer") -> Iterable[Item]:
    """Each model's pass over the rows, shown on stderr: a progress bar on a terminal, else
    (a log, a CI job) a line such as `base: 10/40 answers` every tenth of the rows."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return cast(Iterable[Item], tqdm(rows, desc=role, unit=unit, file=sys.stderr))
    return counted(role, rows, unit)


def measuring(role: str, pairs: Sequence[Item]) -> Iterable[Item]:
    """Each model's pass over the preference pairs (`base: 4/40 pairs`)."""
    return answering(role, pairs, "pair")


def counted(role: str, rows: Sequence[Item], unit: str = "answer") -> Iterator[Item]:
    total = len(rows)
    step = max(1, math.ceil(total / PROGRESS_LINES))
    for done, row in enumerate(rows, start=1):
        yield row  # the caller has answered it when the next one is asked for
        if done % step == 0 or done == total:
            print(f"{role}: {done}/{total} {unit}s", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SafetyCheck:
    """What --safety needs, every option checked before a model loads."""

    probes: list[safety.Probe]
    threshold: int
    ceiling: float | None
    endpoint: str
    rate: float

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
        rate = positive_number(args.safety_rate, "--safety-rate", "requests a second")
        endpoint = content_safety_endpoint(args.safety_endpoint, args, "--safety-endpoint")
        return cls(probes.read(args.safety_prompts), limit, ceiling, endpoint, rate)

    def requests(self) -> str:
        return (
            f"Content Safety at {self.endpoint.rstrip('/')}{safety_client.PATH}"
            f"?api-version={safety_client.API_VERSION}, at most {self.rate:g} a second"
        )

    def signed_in_client(self) -> safety_client.ContentSafetyClient:
        """A client with its token already fetched: without a sign-in, no model loads."""
        from azure.identity import DefaultAzureCredential

        client = safety_client.ContentSafetyClient(
            self.endpoint, DefaultAzureCredential(), rate=self.rate
        )
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


def check_pairs(args: argparse.Namespace) -> None:
    """Refuse --pairs with an endpoint, and a gate on what this run does not measure, before
    anything is read, signed in or loaded."""
    if args.pairs is not None:
        for flag, spec in (("--base", args.base), ("--candidate", args.candidate)):
            if is_endpoint(spec):
                raise UsageError(
                    f"--pairs needs the models' weights (it compares log-probabilities, which "
                    f"an endpoint does not give): {flag} {spec} is an endpoint; give a local "
                    "model folder or a hub id"
                )
    elif args.gate in preference.METRICS:
        raise UsageError(f"--gate {args.gate} goes with --pairs FILE (preference pairs)")


def held_out_file(args: argparse.Namespace) -> Path | None:
    """The held-out file to answer; None when --pairs runs alone: --data not given and its
    default missing (a note on stderr says so). Without --pairs, nothing changes: a missing
    file is refused by the reader."""
    data = prepare.eval_file(args.data or DEFAULT_DATA)
    if args.data is not None or args.pairs is None or data.exists():
        return data
    print(
        f"phi: note: no held-out data at {DEFAULT_DATA}: comparing the pairs only "
        "(--data FILE adds the held-out comparison)",
        file=sys.stderr,
    )
    if args.gate in report.HELD_OUT_GATES:
        raise UsageError(
            f"--gate {args.gate} needs the held-out data: there is no {DEFAULT_DATA}; give "
            "--data FILE, or gate on a preference metric"
        )
    return None


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
    check_pairs(args)
    data = held_out_file(args)
    check = SafetyCheck.of(args)
    rows = read_rows(data, args.limit) if data is not None else None
    pairs = preference.read_pairs(args.pairs, args.limit) if args.pairs is not None else None
    if args.dry_run:
        would = f"dry run: base {args.base} and candidate {args.candidate} would"
        if rows is not None:
            print(f"{would} answer {len(rows)} held-out row(s)")
        if pairs is not None:
            print(
                f"{would if rows is None else 'and'} measure the log-probabilities of the chosen "
                f"and rejected answers of {len(pairs)} preference pair(s) from {args.pairs}"
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
    seed = args.seed or 0
    scored = None
    if rows is not None:
        scored = report.score_rows(rows, models, decoding, answering)
        summary = report.summarize(scored, seed)
    else:
        summary = {"held_out": f"skipped (no --data, and no {DEFAULT_DATA})"}
    names = {role: chosen.name for role, chosen in models.items()}
    appendix = ""
    written = ["report.json", "report.md"] + (["rows.jsonl"] if scored is not None else [])
    if pairs is not None:
        measured = preference.score_pairs(pairs, models, args.pairs, measuring)
        summary["preference"] = preference.summarize(measured, args.pairs, seed)
        appendix += preference.markdown(summary["preference"])
        report.write_jsonl(args.out / "pairs_rows.jsonl", preference.rows(measured))
        written.append("pairs_rows.jsonl")
    if check is not None and client is not None:
        summary["safety"], safety_rows = check.run(client, models, decoding, args.out, seed)
        appendix += safety.markdown(summary["safety"], safety_client.CATEGORIES)
        report.write_jsonl(args.out / "safety_rows.jsonl", safety_rows)
        written.append("safety_rows.jsonl")
    report.write(args.out, summary, scored, names, appendix)
    print(report.markdown(summary, names) + appendix, end="")
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

"""`phi data prepare | validate | screen`: chat data for SFT, preference pairs for DPO."""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from finetune_phi.cli.options import (
    Commands,
    add_outputs_options,
    add_rate_option,
    command,
    content_safety_endpoint,
    positive_number,
)
from finetune_phi.core.errors import UsageError
from finetune_phi.data import chat_format, preference_format, prepare
from finetune_phi.safety import client as safety_client
from finetune_phi.safety import screen as safety

DEFAULT_DEADLINE = 3600.0


def register(commands: Commands) -> None:
    data = commands.add_parser(
        "data", help="prepare, validate and screen chat or preference data"
    ).add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    prep = data.add_parser(
        "prepare",
        help="sample, validate and split chat or preference data into train/eval JSONL",
    )
    prep.add_argument(
        "--out", type=Path, default=prepare.DATA_DIR, help="output folder (default: %(default)s)"
    )
    prep.add_argument(
        "--sample",
        help="how much to keep: a percentage (0.5%%) or a row count (10); default: every row "
        "of --from FILE, 1%% of a hub dataset",
    )
    prep.add_argument("--seed", type=int, default=42, help="seed of the 80/20 split (default: 42)")
    prep.add_argument(
        "--from",
        dest="from_path",
        type=Path,
        help="a local .jsonl or .parquet file instead of the hub (as `phi data validate` reads)",
    )
    prep.add_argument(
        "--task",
        choices=preference_format.TASKS,
        default="chat",
        help="chat rows for SFT (train_data.jsonl, eval_data.jsonl), or preference pairs for "
        "DPO (prompt, chosen, rejected: train_pairs.jsonl, eval_pairs.jsonl) (default: chat)",
    )
    prep.add_argument(
        "--dataset",
        help=f"hub dataset (default: {prepare.DEFAULT_DATASET}; with --task preference "
        f"{preference_format.DEFAULT_DATASET})",
    )
    prep.add_argument(
        "--split",
        help=f"its split (default: {prepare.DEFAULT_SPLIT}; with --task preference "
        f"{preference_format.DEFAULT_SPLIT})",
    )
    prep.add_argument(
        "--screen",
        choices=prepare.SCREEN_MODES,
        help="screen the rows kept with Azure AI Content Safety (as `phi data screen`): refuse "
        "writes nothing when a row is flagged; drop leaves flagged rows out and says how many",
    )
    _add_screen_options(prep, report_default="OUT/screen-report.json")
    command(prep, run_prepare)

    validate = data.add_parser(
        "validate",
        help="check chat or preference JSONL or Parquet files; every bad line (or row) by number",
    )
    validate.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help=f"a chat or preference data file: it {chat_format.SUFFIX_RULE}",
    )
    validate.add_argument(
        "--task",
        choices=preference_format.TASKS,
        help="what the files hold (default: told by each file's first row)",
    )
    validate.add_argument(
        "--tokenizer",
        help="tokenizer (hub id or folder) for token-length statistics, chat template applied "
        "(of preference pairs: prompt + chosen and prompt + rejected)",
    )
    validate.add_argument(
        "--max-length", type=int, default=2048, help="length to count overlong rows against"
    )
    command(validate, run_validate)

    screen = data.add_parser(
        "screen",
        help="run every user and assistant message through Azure AI Content Safety; "
        "FILE:LINE for each row at or above --threshold (exit 1 when any)",
    )
    screen.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a chat or preference JSONL file to screen",
    )
    screen.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent (rows, messages, requests, endpoint) and send nothing",
    )
    _add_screen_options(screen, report_default="screen-report.json beside the first FILE")
    command(screen, run_screen)


def _add_screen_options(parser: argparse.ArgumentParser, report_default: str) -> None:
    parser.add_argument(
        "--endpoint",
        help="the Content Safety endpoint (default: the stack output contentSafetyEndpoint)",
    )
    parser.add_argument(
        "--threshold",
        default=safety.DEFAULT_THRESHOLD,
        help="flag a row when a category reaches this severity: low (2), medium (4) or high "
        "(6) (default: %(default)s)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help=f"the JSON report to write (default: {report_default}); the cache that makes an "
        "interrupted screen resumable lives beside it (REPORT.cache.jsonl)",
    )
    add_rate_option(parser, "--rate")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds for the whole screen, throttled waits included (default: %(default)g)",
    )
    add_outputs_options(parser)


def _screen_setup(args: argparse.Namespace) -> tuple[str, int]:
    """The endpoint and threshold, every screening option checked before any data is read
    or anything is sent (UsageError naming the option)."""
    limit = safety.threshold(args.threshold)
    positive_number(args.rate, "--rate", "requests a second")
    positive_number(args.deadline, "--deadline", "seconds")
    endpoint = content_safety_endpoint(args.endpoint, args, "--endpoint")
    return endpoint, limit


def _run_screen(
    args: argparse.Namespace,
    sources: list[tuple[str, list[safety.Row]]],
    report: Path,
    endpoint: str,
    limit: int,
) -> safety.Outcome:
    """Screen the rows, write the report, print FILE:LINE for each flagged category."""
    from azure.identity import DefaultAzureCredential

    plan = safety.Plan.of(sources, safety_client.CATEGORIES)
    cache = safety.Cache(safety.cache_path(report))
    client = safety_client.ContentSafetyClient(
        endpoint, DefaultAzureCredential(), rate=args.rate, deadline_seconds=args.deadline
    )
    outcome = safety.screen(plan, cache, client.analyze, limit)
    safety.write_report(
        report, outcome, endpoint=endpoint, limit=limit, categories=safety_client.CATEGORIES
    )
    for flagged in outcome.flagged:
        for line in flagged.lines():
            print(line, file=sys.stderr)
    return outcome


def run_prepare(args: argparse.Namespace) -> int:
    if not args.screen:
        given = [
            option
            for option, value, default in (
                ("--endpoint", args.endpoint, None),
                ("--report", args.report, None),
                ("--stack", args.stack, None),
                ("--outputs", args.outputs, None),
                ("--threshold", args.threshold, safety.DEFAULT_THRESHOLD),
                ("--rate", args.rate, safety_client.DEFAULT_RATE),
                ("--deadline", args.deadline, DEFAULT_DEADLINE),
            )
            if value != default
        ]
        if given:
            raise UsageError(f"{given[0]} is a screening option: it needs --screen refuse|drop")
    screener = None
    report = args.report or args.out / "screen-report.json"
    if args.screen:
        endpoint, limit = _screen_setup(args)

        def screener(source: str, rows: list[tuple[int, Any]]) -> Mapping[int, Mapping[str, int]]:
            outcome = _run_screen(args, [(source, rows)], report, endpoint, limit)
            return {flagged.line: flagged.severities for flagged in outcome.flagged}

    dataset, split = prepare.default_source(args.task)
    result = prepare.prepare(
        out_dir=args.out,
        size=prepare.SampleSize.parse(args.sample) if args.sample else None,
        seed=args.seed,
        dataset=args.dataset or dataset,
        split=args.split or split,
        task=args.task,
        from_path=args.from_path,
        screen=screener,
        screen_mode=args.screen or "refuse",
    )
    if args.screen:
        print(
            f"screened with Content Safety: dropped {len(result.dropped)} flagged row(s) "
            f"(report: {report})"
            if args.screen == "drop"
            else f"screened with Content Safety: no row flagged (report: {report})"
        )
    print(
        f"wrote {result.train} ({result.train_rows} rows) and {result.eval} ({result.eval_rows} rows)"
    )
    return 0


def run_screen(args: argparse.Namespace) -> int:
    """Exit 1 when any row reaches the threshold; the report lists them all."""
    endpoint, limit = _screen_setup(args)
    missing = next((path for path in args.files if not path.is_file()), None)
    if missing is not None:
        raise UsageError(f"{missing}: {chat_format.file_problem(missing)}")
    sources = [(str(path), safety.read_file(path)) for path in args.files]
    report = args.report or args.files[0].with_name("screen-report.json")
    if args.dry_run:
        plan = safety.Plan.of(sources, safety_client.CATEGORIES)
        cached = safety.Cache(safety.cache_path(report))
        send = plan.to_send(cached)
        print(
            f"dry run: would send {len(send)} request(s) (one text each, at most "
            f"{safety_client.MAX_TEXT} characters; {len(plan.keys) - len(send)} already in the "
            f"cache) for {plan.messages} user and assistant message(s) in {plan.rows} row(s) of "
            f"{len(sources)} file(s) to {endpoint.rstrip('/')}{safety_client.PATH}"
            f"?api-version={safety_client.API_VERSION}, at most {args.rate:g} a second; "
            "nothing was sent"
        )
        return 0
    outcome = _run_screen(args, sources, report, endpoint, limit)
    print(
        f"screened {outcome.rows} row(s): {len(outcome.flagged)} flagged at or above severity "
        f"{limit}; {outcome.sent} request(s) sent, {outcome.cached} from the cache; "
        f"report: {report}"
    )
    return 1 if outcome.flagged else 0


def rows_and_task(
    path: Path, given: str | None
) -> tuple[Iterator[tuple[int, Any, str | None]], str]:
    """The file's rows, read once, and its task: `given`, or "preference" when its first row
    has chosen/rejected, else "chat" (a file mixing the two is then reported row by row)."""
    rows = chat_format.read_rows(path)
    if given is not None:
        return rows, given
    seen = []
    for item in rows:
        seen.append(item)
        if item[1] is not None:
            break
    task = preference_format.task_of(seen[-1][1]) if seen and seen[-1][1] is not None else None
    return itertools.chain(seen, rows), task or "chat"


def run_validate(args: argparse.Namespace) -> int:
    """Exit 1 when what the files hold breaks the format (every problem is listed); a file
    that is not there at all is a usage error, named before any file is read."""
    missing = next((path for path in args.files if not path.exists()), None)
    if missing is not None:
        raise UsageError(f"{missing}: {chat_format.file_problem(missing, parquet=True)}")
    failed = False
    for path in args.files:
        problem = chat_format.file_problem(path, parquet=True)
        if problem is not None:
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
            continue
        try:
            rows, task = rows_and_task(path, args.task)
            checker = (
                preference_format.row_problems if task == "preference" else chat_format.row_problems
            )
            report = chat_format.validate_rows(rows, path, checker)
        except chat_format.UnreadableFileError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        for line, reason in report.problems:
            print(f"{path}:{line}: {reason}", file=sys.stderr)
        kind = "pairs" if task == "preference" else "rows"
        print(f"{path}: {report.rows} {kind}, {len(report.problems)} problem(s)")
        failed |= not report.ok
        if report.ok and args.tokenizer:
            from finetune_phi.data.token_lengths import pair_statistics, token_statistics

            statistics = pair_statistics if task == "preference" else token_statistics
            print(statistics(path, args.tokenizer, args.max_length))
    return 1 if failed else 0

"""`phi data prepare | validate`: chat data for the fine-tune."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune_phi.cli.options import Commands, command
from finetune_phi.core.errors import UsageError
from finetune_phi.data import chat_format, prepare


def register(commands: Commands) -> None:
    data = commands.add_parser("data", help="prepare and validate chat data").add_subparsers(
        dest="data_command", required=True, metavar="COMMAND"
    )
    prep = data.add_parser(
        "prepare", help="sample, validate and split chat data into train/test JSONL"
    )
    prep.add_argument(
        "--out", type=Path, default=Path("data"), help="output folder (default: data)"
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
        "--dataset", default=prepare.DEFAULT_DATASET, help="hub dataset (default: %(default)s)"
    )
    prep.add_argument(
        "--split", default=prepare.DEFAULT_SPLIT, help="its split (default: %(default)s)"
    )
    command(prep, run_prepare)

    validate = data.add_parser(
        "validate",
        help="check chat JSONL or Parquet files; every bad line (or row) by number",
    )
    validate.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help=f"a chat data file: it {chat_format.SUFFIX_RULE}",
    )
    validate.add_argument(
        "--tokenizer", help="tokenizer (hub id or folder) for token-length statistics"
    )
    validate.add_argument(
        "--max-length", type=int, default=2048, help="length to count overlong rows against"
    )
    command(validate, run_validate)


def run_prepare(args: argparse.Namespace) -> int:
    result = prepare.prepare(
        out_dir=args.out,
        size=prepare.SampleSize.parse(args.sample) if args.sample else None,
        seed=args.seed,
        dataset=args.dataset,
        split=args.split,
        from_path=args.from_path,
    )
    print(
        f"wrote {result.train} ({result.train_rows} rows) and {result.eval} ({result.eval_rows} rows)"
    )
    return 0


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
            report = chat_format.validate_file(path)
        except chat_format.UnreadableFileError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        for line, reason in report.problems:
            print(f"{path}:{line}: {reason}", file=sys.stderr)
        print(f"{path}: {report.rows} rows, {len(report.problems)} problem(s)")
        failed |= not report.ok
        if report.ok and args.tokenizer:
            from finetune_phi.data.token_lengths import token_statistics

            print(token_statistics(path, args.tokenizer, args.max_length))
    return 1 if failed else 0

"""`phi verify`: train/serve parity, the served model's greedy answers against the trained
model's own (finetune_phi.evaluation.parity)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from finetune_phi.cli.eval import STACK_ENDPOINT, model, progress
from finetune_phi.cli.options import Commands, add_endpoint_options, add_outputs_options, command
from finetune_phi.core.errors import PhiError, UsageError
from finetune_phi.data import prepare
from finetune_phi.evaluation import parity
from finetune_phi.evaluation.models import Decoding, LocalModel, Model
from finetune_phi.evaluation.rows import EvalRow, read_rows


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "verify",
        help="check that a served model answers as the trained one does (train/serve parity)",
        description="The trained MLflow model, in this process, and the served one answer the "
        "held-out prompts greedily; every answer must agree (--min-agreement). SERVED is a URL "
        f"(a `phi serve`, vLLM, any OpenAI-compatible server) or '{STACK_ENDPOINT}' for the "
        "stack's endpoint. Exit 1 below the threshold, naming where each answer diverged.",
    )
    parser.add_argument("--model", required=True, help="the trained MLflow model folder")
    parser.add_argument("--served", required=True, metavar="SERVED")
    parser.add_argument(
        "--data", type=Path, default=Path("data/eval_data.jsonl"), help="default: %(default)s"
    )
    parser.add_argument("--limit", type=int, default=8, help="prompts to compare (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="default: 32")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=1.0,
        help="the share of answers that must agree (default: 1.0)",
    )
    parser.add_argument(
        "--tie-margin",
        type=float,
        default=parity.TIE_MARGIN,
        help="answers that part where the trained model's top two logits are closer than "
        "this, with the served answer going on with its second choice, still agree: two "
        "engines round near-ties differently (default: %(default)s)",
    )
    parser.add_argument(
        "--logprob-tolerance",
        type=float,
        default=parity.LOGPROB_TOLERANCE,
        help="where the server returns log-probabilities (chat completions), how far its first "
        "token's may be from the trained model's (default: %(default)s, for fp32)",
    )
    add_outputs_options(parser)
    add_endpoint_options(parser)
    command(parser, run)


def run(args: argparse.Namespace) -> int:
    check = Check.prepare(
        args.model,
        args.data,
        args.limit,
        args.max_new_tokens,
        args.min_agreement,
        args.tie_margin,
        args.logprob_tolerance,
    )
    check.against(model(args.served, "--served", args), args.served)
    return 0


def verdict(comparison: parity.Comparison, tie_margin: float) -> str:
    if comparison.cut_short:
        return " (cut short by the token budget: agrees)"
    return " (a near-tie: agrees)" if comparison.agrees(tie_margin) else ""


@dataclass
class Check:
    """A parity check, its inputs checked and the trained model loaded before anything is
    served or deployed."""

    rows: list[EvalRow]
    trained: LocalModel
    decoding: Decoding
    min_agreement: float
    tie_margin: float
    logprob_tolerance: float

    @classmethod
    def prepare(
        cls,
        model_dir: str,
        data: Path,
        limit: int,
        max_new_tokens: int,
        min_agreement: float,
        tie_margin: float,
        logprob_tolerance: float,
    ) -> Check:
        if not 0 < min_agreement <= 1:
            raise UsageError(f"--min-agreement {min_agreement}: must be above 0, at most 1")
        if not 0 <= tie_margin < 10:
            raise UsageError(f"--tie-margin {tie_margin}: must be at least 0, below 10")
        if limit < 1:
            raise UsageError(f"--limit {limit}: must be 1 or more")
        if not 1 <= max_new_tokens <= 1024:
            raise UsageError(f"--max-new-tokens {max_new_tokens}: must be between 1 and 1024")
        rows = read_rows(prepare.eval_file(data), limit)
        trained = LocalModel.load(model_dir, "--model")
        return cls(
            rows, trained, Decoding(max_new_tokens), min_agreement, tie_margin, logprob_tolerance
        )

    def against(self, served: Model, name: str) -> None:
        """Print where answers part and the agreement; PhiError below the threshold."""
        comparisons = parity.compare(self.rows, self.trained, served, self.decoding, progress)
        for comparison in comparisons:
            if comparison.divergence is not None:
                print(comparison.describe() + verdict(comparison, self.tie_margin))
        share = parity.agreement(comparisons, self.tie_margin)
        print(
            f"agreement: {share:.0%} of {len(comparisons)} prompts ({name} vs {self.trained.name})"
        )
        gap = parity.largest_logprob_gap(comparisons)
        if gap is not None:
            print(
                f"first-token log-probabilities: at most {gap:.4f} apart "
                f"(--logprob-tolerance {self.logprob_tolerance:g})"
            )
        if share < self.min_agreement:
            raise PhiError(
                f"the served model answers unlike the trained one: {share:.0%} agreement, "
                f"below --min-agreement {self.min_agreement:g}"
            )
        if gap is not None and gap > self.logprob_tolerance:
            raise PhiError(
                f"the served model's first-token log-probabilities are {gap:.4f} from the "
                f"trained model's, beyond --logprob-tolerance {self.logprob_tolerance:g}"
            )

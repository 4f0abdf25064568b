"""Scores: token F1 and ROUGE-L of an answer against its reference (azure-ai-evaluation's
offline evaluators), answer length, and paired bootstrap confidence intervals of deltas."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

RESAMPLES = 1000


@cache
def _evaluators() -> tuple[Any, Any]:
    from azure.ai.evaluation import F1ScoreEvaluator, RougeScoreEvaluator, RougeType

    return F1ScoreEvaluator(), RougeScoreEvaluator(rouge_type=RougeType.ROUGE_L)


def text_scores(answer: str, reference: str) -> dict[str, float]:
    """{"f1", "rouge_l", "length"}: F1 and ROUGE-L F-measure in [0, 1]; length in words."""
    length = float(len(answer.split()))
    if not answer.strip():
        return {"f1": 0.0, "rouge_l": 0.0, "length": length}
    f1, rouge = _evaluators()
    return {
        "f1": float(f1(response=answer, ground_truth=reference)["f1_score"]),
        "rouge_l": float(
            rouge(response=answer, ground_truth=reference)["rouge_properties"]["rouge_f1_score"]
        ),
        "length": length,
    }


def bootstrap_interval(
    statistic: Callable[[Sequence[int]], float], rows: int, seed: int = 0
) -> tuple[float, float]:
    """The 95 % interval of `statistic` over rows resampled with replacement."""
    draw = random.Random(seed)  # noqa: S311 - resampling, not a secret
    values = sorted(
        statistic([draw.randrange(rows) for _ in range(rows)]) for _ in range(RESAMPLES)
    )
    return values[int(0.025 * RESAMPLES)], values[int(0.975 * RESAMPLES) - 1]


def difference(
    candidate: Callable[[Sequence[int]], float], base: Callable[[Sequence[int]], float]
) -> Callable[[Sequence[int]], float]:
    """The paired statistic candidate minus base, over the same resampled rows."""
    return lambda indices: candidate(indices) - base(indices)

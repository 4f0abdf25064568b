"""Train/serve parity: the served model's greedy answers against the trained model's own,
computed in this process from the folder training wrote.

A served model that answers differently is not the model that was evaluated: the base model
served in its place, another chat template, an adapter left unmerged, a lower precision. In
fp32 on a CPU both sides run the same arithmetic, so every greedy answer must agree (the
default threshold, 1.0); in half precision a near-tie can round the other way on a few
prompts, hence a lower `--min-agreement` there (the docs suggest 0.9).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from finetune_phi.evaluation.models import Decoding, Model
from finetune_phi.evaluation.rows import EvalRow

CONTEXT_CHARS = 24
"""Characters shown on each side of a divergence."""


@dataclass(frozen=True)
class Comparison:
    line: int
    trained: str
    served: str

    @property
    def divergence(self) -> int | None:
        """The first character where the answers differ, or None when they agree."""
        if self.trained == self.served:
            return None
        pairs = zip(self.trained, self.served, strict=False)
        return next(
            (i for i, (a, b) in enumerate(pairs) if a != b),
            min(map(len, (self.trained, self.served))),
        )

    def describe(self) -> str:
        at = self.divergence
        if at is None:
            return f"line {self.line}: agree"
        start = max(at - CONTEXT_CHARS, 0)
        return (
            f"line {self.line}: differ at character {at}: trained "
            f"{self.trained[start : at + CONTEXT_CHARS]!r}, served {self.served[start : at + CONTEXT_CHARS]!r}"
        )


def compare(
    rows: Sequence[EvalRow],
    trained: Model,
    served: Model,
    decoding: Decoding,
    progress: Callable[[Sequence[EvalRow]], Iterable[EvalRow]] = iter,
) -> list[Comparison]:
    """Both models' greedy answers to each held-out prompt, stripped as the scoring contract
    strips them."""
    return [
        Comparison(
            row.line,
            trained.answer(row.prompt, decoding).strip(),
            served.answer(row.prompt, decoding).strip(),
        )
        for row in progress(rows)
    ]


def agreement(comparisons: Sequence[Comparison]) -> float:
    return sum(c.divergence is None for c in comparisons) / len(comparisons)

"""Preference metrics (`phi eval --pairs FILE`): does the model give the chosen answer of a
pair more probability than the rejected one, and by how much?

A pair is a row of TRL's conversational preference format (`data.preference_format`): a
prompt and a chosen and a rejected assistant answer. Each model measures each answer's
log-probability given the prompt, with its chat template, exactly as the held-out loss is
measured (`LocalModel.loss`: the answer's tokens and its end-of-turn marker, given every token
before them; the prompt's tokens do not count). Per model, over the pairs:

- `preference_accuracy`: how often the chosen answer's summed log-probability is the higher;
- `preference_accuracy_per_token`: the same with the mean log-probability per answer token,
  which takes the answers' lengths out (a sum favours the shorter answer);
- `margin`: the mean of chosen minus rejected summed log-probability, in nats.

A tie (equal log-probabilities: the model cannot tell the answers apart) counts as half a
preference, so a model that cannot tell any pair apart scores 0.5, as a coin would. (TRL's
`rewards/accuracies` during DPO training counts a tie as not preferred, and measures an
implicit reward against a reference model, not a raw log-probability: the two numbers are
related, not the same.)

Every metric gets a 95 % bootstrap interval per model (pairs resampled) and the candidate
minus base delta a paired one, as the held-out metrics do; higher is better on all three.
Log-probabilities need the model's weights: endpoints are refused before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_phi.core.errors import UsageError
from finetune_phi.data import chat_format, preference_format
from finetune_phi.evaluation.metrics import bootstrap_interval, difference
from finetune_phi.evaluation.models import Model

METRICS = ("preference_accuracy", "preference_accuracy_per_token", "margin")
"""The report's preference metrics, in its order; higher is better on each."""
TIES = "a tie counts as half a preference"
LOG_PROB = (
    "log-probability (nats) of each answer given the prompt, with the model's chat template: "
    "summed over the answer's tokens and its end-of-turn marker, or their mean per token; the "
    "prompt's tokens do not count"
)
SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class Pair:
    line: int
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class LogProbs:
    """One model's measure of one pair: each answer's summed log-probability and tokens."""

    chosen: float
    chosen_tokens: int
    rejected: float
    rejected_tokens: int

    @property
    def margin(self) -> float:
        return self.chosen - self.rejected

    def per_token(self) -> tuple[float, float]:
        return self.chosen / self.chosen_tokens, self.rejected / self.rejected_tokens


@dataclass(frozen=True)
class ScoredPair:
    pair: Pair
    log_probs: dict[str, LogProbs]
    """Model role ("base", "candidate") -> its measure of the pair."""


def read_pairs(path: Path, limit: int | None = None, flag: str = "--pairs") -> list[Pair]:
    """Every pair of a preference JSONL file (either spelling), or UsageError naming the file's
    problem or its first bad lines as FILE:LINE: reason."""
    problem = chat_format.file_problem(path, task="preference")
    if problem is not None:
        raise UsageError(f"{flag} {path}: {problem}")
    found: list[tuple[int, Any]] = []

    def kept() -> Iterator[tuple[int, Any, str | None]]:
        for number, row, reason in chat_format.read_jsonl(path):
            if row is not None:
                found.append((number, row))
            yield number, row, reason

    report = chat_format.validate_rows(kept(), path, preference_format.row_problems)
    if not report.ok:
        shown = "\n".join(
            f"  {path}:{line}: {reason}" if line else f"  {path}: {reason}"
            for line, reason in report.problems[:SHOWN_PROBLEMS]
        )
        more = len(report.problems) - SHOWN_PROBLEMS
        raise UsageError(
            f"{flag} {path} is not preference JSONL ({len(report.problems)} problem(s)):\n{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
        )
    pairs = []
    for number, row in found:
        explicit = preference_format.normalize(row)
        pairs.append(
            Pair(
                number,
                explicit["prompt"],
                explicit["chosen"][0]["content"],
                explicit["rejected"][0]["content"],
            )
        )
    return pairs[:limit] if limit else pairs


def measure(model: Model, pair: Pair, source: str) -> LogProbs:
    """Both answers' log-probabilities under `model` (negated `loss`: the same computation
    as the held-out loss). `source` is FILE:LINE, for the refusals."""
    answers = []
    for which, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        measured = model.loss(pair.prompt, answer)
        if measured is None:
            raise UsageError(f"{model.name}: an endpoint gives no log-probabilities (--pairs)")
        cross_entropy, tokens = measured
        if tokens < 1:
            raise UsageError(
                f"{source}: the {which} answer has no tokens under {model.name}'s chat template"
            )
        answers.append((-cross_entropy, tokens))
    (chosen, chosen_tokens), (rejected, rejected_tokens) = answers
    return LogProbs(chosen, chosen_tokens, rejected, rejected_tokens)


def score_pairs(
    pairs: Sequence[Pair],
    models: dict[str, Model],
    path: Path,
    progress: Callable[[str, Sequence[Pair]], Iterable[Pair]] = lambda role, pairs: pairs,
) -> list[ScoredPair]:
    """Every pair measured by each model in turn (all of the base's, then the candidate's)."""
    measured: dict[str, list[LogProbs]] = {}
    for role, model in models.items():
        measured[role] = [
            measure(model, pair, f"{path}:{pair.line}") for pair in progress(role, pairs)
        ]
    return [
        ScoredPair(pair, {role: measured[role][index] for role in models})
        for index, pair in enumerate(pairs)
    ]


def preferred(chosen: float, rejected: float) -> float:
    """1 when the chosen answer is the more probable, 0 when the rejected one is, 0.5 for a
    tie."""
    if chosen > rejected:
        return 1.0
    if chosen < rejected:
        return 0.0
    return 0.5


def per_pair(log_probs: LogProbs, metric: str) -> float:
    """`metric`'s value on one pair."""
    if metric == "preference_accuracy":
        return preferred(log_probs.chosen, log_probs.rejected)
    if metric == "preference_accuracy_per_token":
        return preferred(*log_probs.per_token())
    if metric == "margin":
        return log_probs.margin
    raise ValueError(f"not a preference metric: {metric}")


def _statistic(
    scored: Sequence[ScoredPair], role: str, metric: str
) -> Callable[[Sequence[int]], float]:
    values = [per_pair(s.log_probs[role], metric) for s in scored]
    return lambda indices: sum(values[i] for i in indices) / len(indices)


def summarize(scored: Sequence[ScoredPair], path: Path, seed: int = 0) -> dict[str, Any]:
    """report.json's "preference" section: each metric for both models with 95 % bootstrap
    intervals, and the candidate-minus-base delta with a paired one."""
    if not scored:
        raise UsageError(f"--pairs {path} holds no pairs")
    count = len(scored)
    everything = range(count)
    section: dict[str, Any] = {"n": count, "file": str(path), "ties": TIES, "log_prob": LOG_PROB}
    for role in ("base", "candidate"):
        section[role] = {}
        for metric in METRICS:
            value = _statistic(scored, role, metric)
            low, high = bootstrap_interval(value, count, seed)
            section[role][metric] = {"value": value(everything), "ci95": [low, high]}
    section["delta"] = {}
    for metric in METRICS:
        delta = difference(
            _statistic(scored, "candidate", metric), _statistic(scored, "base", metric)
        )
        low, high = bootstrap_interval(delta, count, seed)
        section["delta"][metric] = {"value": delta(everything), "ci95": [low, high]}
    section["ties_seen"] = {
        role: sum(s.log_probs[role].chosen == s.log_probs[role].rejected for s in scored)
        for role in ("base", "candidate")
    }
    return section


def markdown(section: dict[str, Any]) -> str:
    """The preference table, for report.md after the held-out one."""

    def cell(value: dict[str, Any], sign: str = "") -> str:
        low, high = value["ci95"]
        return f"{value['value']:{sign}.4f} ({low:{sign}.4f} to {high:{sign}.4f})"

    lines = [
        "",
        f"Preference: {section['n']} pairs from {section['file']}. Each answer's "
        "log-probability given the prompt (nats), summed over its tokens or per token; "
        f"{TIES}.",
        "",
        "| metric | base (95 % CI) | candidate (95 % CI) | delta (95 % CI) |",
        "|---|---|---|---|",
    ]
    for metric in METRICS:
        lines.append(
            f"| {metric} | {cell(section['base'][metric])} | "
            f"{cell(section['candidate'][metric])} | {cell(section['delta'][metric], '+')} |"
        )
    return "\n".join(lines) + "\n"


def rows(scored: Sequence[ScoredPair]) -> list[dict[str, Any]]:
    """pairs_rows.jsonl's records: each pair with both models' log-probabilities."""
    return [
        {
            "line": s.pair.line,
            "prompt": s.pair.prompt,
            "chosen": s.pair.chosen,
            "rejected": s.pair.rejected,
            "log_probs": {
                role: {
                    "chosen": {"log_prob": lp.chosen, "tokens": lp.chosen_tokens},
                    "rejected": {"log_prob": lp.rejected, "tokens": lp.rejected_tokens},
                    "margin": lp.margin,
                }
                for role, lp in s.log_probs.items()
            },
        }
        for s in scored
    ]
